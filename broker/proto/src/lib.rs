//! The RocketMQ 5 gRPC protocol (`apache.rocketmq.v2`) as Rill speaks it.
//!
//! What it is: our own `.proto` description of the wire protocol the
//! official RocketMQ 5 clients use (written from its field numbers, types and
//! enum values), compiled at build time with `protox` — no system `protoc` —
//! into prost messages and tonic client and server stubs ([`v2`]), plus small
//! helpers that every user of the protocol needs ([`status`], [`time`]).
//!
//! What it is not: no server logic, no storage, no conversion to the
//! broker's domain types (the broker crate owns those).
//!
//! Compatibility: prost keeps unknown enum values as plain integers and skips
//! unknown fields, so newer clients that add fields still decode.
//!
//! ```
//! use prost::Message;
//! use rill_proto::v2::{Code, Resource};
//!
//! let topic = Resource { resource_namespace: String::new(), name: "orders".into() };
//! let bytes = topic.encode_to_vec();
//! assert_eq!(Resource::decode(bytes.as_slice()).unwrap().name, "orders");
//! assert_eq!(rill_proto::status::ok().code, Code::Ok as i32);
//! ```

/// Generated messages, enums and services of `apache.rocketmq.v2`.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod v2 {
    tonic::include_proto!("apache.rocketmq.v2");
}

/// Rill's administration service (`rill.admin.v1`), used by `rill admin`.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod admin {
    tonic::include_proto!("rill.admin.v1");
}

/// Rill's name server protocol (`rill.namesrv.v1`): broker registration and routes.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod namesrv {
    tonic::include_proto!("rill.namesrv.v1");
}

pub mod status;
pub mod time;

/// The gRPC service name the official clients call.
pub const SERVICE_NAME: &str = "apache.rocketmq.v2.MessagingService";

/// Response header of `Telemetry` by which a Rill broker says it stores
/// packed batches (`rill_common::packed`); a RocketMQ proxy never sends it,
/// so a client packs only for a broker that does.
pub const PACKED_BATCHES_HEADER: &str = "x-rill-packed-batches";

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v2::*;

    /// Bytes worked out by hand from the wire listing: field numbers and
    /// wire types must match what the official clients send.
    #[test]
    fn field_numbers_match_the_wire() {
        let r = Resource { resource_namespace: String::new(), name: "t".into() };
        assert_eq!(r.encode_to_vec(), [0x12, 0x01, b't']);
        let s = Status { code: Code::Ok as i32, message: String::new() };
        // Field 1, varint 20000.
        assert_eq!(s.encode_to_vec(), [0x08, 0xA0, 0x9C, 0x01]);
        let q = MessageQueue { id: 3, permission: Permission::ReadWrite as i32, ..Default::default() };
        assert_eq!(q.encode_to_vec(), [0x10, 0x03, 0x18, 0x04]);
        let props = SystemProperties { tag: Some(String::new()), queue_offset: Some(0), ..Default::default() };
        // proto3 `optional` fields are sent even when they hold the default.
        assert_eq!(props.encode_to_vec(), [0x0A, 0x00, 0x70, 0x00]);
        let cmd =
            TelemetryCommand { status: None, command: Some(telemetry_command::Command::Settings(Settings::default())) };
        assert_eq!(cmd.encode_to_vec(), [0x12, 0x00]);
        let m = super::v2::Message { body: prost::bytes::Bytes::from_static(b"hi"), ..Default::default() };
        assert_eq!(m.encode_to_vec(), [0x22, 0x02, b'h', b'i']);
    }

    #[test]
    fn unknown_fields_and_enum_values_are_tolerated() {
        // Status with code 99999 (not in our enum) and an unknown field 15.
        let mut bytes = vec![0x08];
        prost::encoding::encode_varint(99_999, &mut bytes);
        bytes.extend_from_slice(&[0x7A, 0x01, b'x', 0x12, 0x02, b'o', b'k']);
        let s = Status::decode(bytes.as_slice()).unwrap();
        assert_eq!(s.code, 99_999);
        assert_eq!(s.message, "ok");
        assert!(Code::try_from(s.code).is_err());
    }

    #[test]
    fn generated_service_name_matches_what_clients_call() {
        use super::v2::messaging_service_server::SERVICE_NAME;
        assert_eq!(SERVICE_NAME, super::SERVICE_NAME);
    }
}
