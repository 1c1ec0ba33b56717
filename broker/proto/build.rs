//! Compiles the apache.rocketmq.v2 .proto files with protox (pure Rust, no
//! system protoc) and generates prost messages and tonic services.

const FILES: [&str; 5] = [
    "proto/apache/rocketmq/v2/definition.proto",
    "proto/apache/rocketmq/v2/service.proto",
    "proto/apache/rocketmq/v2/admin.proto",
    "proto/rill/admin/v1/admin.proto",
    "proto/rill/namesrv/v1/namesrv.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for f in FILES {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(FILES, ["proto"])?;
    // Message bodies as `Bytes`: decoding slices the received buffer and
    // copies of a message share the body instead of copying it.
    tonic_prost_build::configure()
        .bytes(".apache.rocketmq.v2.Message.body")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
