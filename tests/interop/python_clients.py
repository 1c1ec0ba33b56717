"""Interop check of Rill against the official RocketMQ 5 Python client.

Run by tests/interop_python.rs against a `rill standalone` it started:

    python python_clients.py send ENDPOINT TOPIC COUNT [FIRST_INDEX]
    python python_clients.py simple ENDPOINT TOPIC GROUP TAG_EXPRESSION EXPECTED
    python python_clients.py push ENDPOINT TOPIC GROUP TAG_EXPRESSION EXPECTED

    python python_clients.py delay ENDPOINT TOPIC GROUP DELAY_SECONDS
    python python_clients.py retry ENDPOINT TOPIC GROUP
    python python_clients.py fifo ENDPOINT TOPIC GROUP PER_GROUP
    python python_clients.py txn ENDPOINT TOPIC GROUP
    python python_clients.py invisible ENDPOINT TOPIC GROUP

`send` sends COUNT messages, alternating tags TagA/TagB, with keys and a user
property, and prints one line per message: `SENT <index> <message id>`.
`simple` and `push` consume with a new group until EXPECTED messages arrived
(acknowledging each) and print `GOT <index> <tag> <message id>` per message;
they exit non-zero on a timeout or a message that does not match the filter.
`delay` sends one message with a delivery timestamp DELAY_SECONDS ahead,
consumes it with a simple consumer and prints `EARLY_MS <n>` when it came
before its time or `LATE_MS <n>` after it. `retry` sends one message to a
push consumer whose listener fails the first attempt and succeeds the
second, and prints `ATTEMPT <n> <ms since the first>` for each. `fifo`
sends PER_GROUP messages to each of the message groups G0, G1, G2
(interleaved), consumes them with a push consumer of a FIFO group whose
listener fails the second message of every group once, and prints
`ORDER <group> <sequence numbers in the order they succeeded>`. `txn`
sends three transactional messages — one committed, one rolled back, one
left open for the broker to check back (the checker commits it) — and
prints `GOT <body>` for what a simple consumer then receives and
`CHECKED <body>` for each check-back. `invisible` sends one message, asks
for it with a 5 s invisible duration (the broker refuses: `REFUSED`),
receives it with 10 s, shortens that to 1 s with change_invisible_duration
without acknowledging, and prints `ATTEMPT <n>` for each delivery until the
redelivery, which it acknowledges.
"""

import sys
import threading
import time

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression, Message,
                      MessageListener, Producer, PushConsumer, SimpleConsumer, TransactionChecker,
                      TransactionResolution)

DEADLINE_SECONDS = 60


def config(endpoint):
    return ClientConfiguration(endpoint, Credentials())


def body(i):
    return f"order-{i}".encode()


def tag_of(i):
    return "TagA" if i % 2 == 0 else "TagB"


def check(msg, tag_expression):
    text = msg.body.decode()
    if not text.startswith("order-"):
        raise SystemExit(f"unexpected body {text!r}")
    i = int(text.split("-")[1])
    if msg.tag != tag_of(i):
        raise SystemExit(f"message {i} has tag {msg.tag!r}, expected {tag_of(i)!r}")
    if tag_expression != "*" and msg.tag not in [t.strip() for t in tag_expression.split("||")]:
        raise SystemExit(f"message {i} with tag {msg.tag!r} does not match {tag_expression!r}")
    if list(msg.keys) != [f"key-{i}"]:
        raise SystemExit(f"message {i} has keys {msg.keys!r}")
    if msg.properties.get("shop") != f"shop-{i % 3}":
        raise SystemExit(f"message {i} has properties {msg.properties!r}")
    return i


def send(endpoint, topic, count, first=0):
    producer = Producer(config(endpoint), (topic,))
    producer.startup()
    try:
        for i in range(first, first + count):
            msg = Message()
            msg.topic = topic
            msg.body = body(i)
            msg.tag = tag_of(i)
            msg.keys = f"key-{i}"
            msg.add_property("shop", f"shop-{i % 3}")
            receipt = producer.send(msg)
            print(f"SENT {i} {receipt.message_id}", flush=True)
    finally:
        producer.shutdown()


def simple(endpoint, topic, group, tag_expression, expected):
    consumer = SimpleConsumer(config(endpoint), group, {topic: FilterExpression(tag_expression)}, await_duration=3)
    consumer.startup()
    seen = set()
    deadline = time.time() + DEADLINE_SECONDS
    try:
        while len(seen) < expected:
            if time.time() > deadline:
                raise SystemExit(f"timed out with {len(seen)} of {expected} messages")
            for msg in consumer.receive(16, 15):
                i = check(msg, tag_expression)
                consumer.ack(msg)
                if i not in seen:
                    seen.add(i)
                    print(f"GOT {i} {msg.tag} {msg.message_id}", flush=True)
    finally:
        consumer.shutdown()


class Collect(MessageListener):
    def __init__(self, tag_expression, expected):
        self.tag_expression = tag_expression
        self.expected = expected
        self.seen = set()
        self.error = None
        self.done = threading.Event()
        self.lock = threading.Lock()

    def consume(self, message):
        try:
            i = check(message, self.tag_expression)
        except SystemExit as e:
            self.error = str(e)
            self.done.set()
            return ConsumeResult.SUCCESS
        with self.lock:
            if i not in self.seen:
                self.seen.add(i)
                print(f"GOT {i} {message.tag} {message.message_id}", flush=True)
            if len(self.seen) >= self.expected:
                self.done.set()
        return ConsumeResult.SUCCESS


def push(endpoint, topic, group, tag_expression, expected):
    listener = Collect(tag_expression, expected)
    consumer = PushConsumer(config(endpoint), group, listener, {topic: FilterExpression(tag_expression)})
    consumer.startup()
    try:
        if not listener.done.wait(DEADLINE_SECONDS):
            raise SystemExit(f"timed out with {len(listener.seen)} of {expected} messages")
        if listener.error:
            raise SystemExit(listener.error)
    finally:
        consumer.shutdown()


def delay(endpoint, topic, group, seconds):
    consumer = SimpleConsumer(config(endpoint), group, {topic: FilterExpression("*")}, await_duration=3)
    consumer.startup()
    producer = Producer(config(endpoint), (topic,))
    producer.startup()
    try:
        due_s = int(time.time()) + seconds
        msg = Message()
        msg.topic = topic
        msg.body = b"delayed"
        msg.delivery_timestamp = due_s
        producer.send(msg)
        deadline = time.time() + DEADLINE_SECONDS
        while time.time() < deadline:
            for m in consumer.receive(1, 15):
                arrived_ms = int(time.time() * 1000)
                consumer.ack(m)
                if m.body != b"delayed":
                    raise SystemExit(f"unexpected body {m.body!r}")
                late = arrived_ms - due_s * 1000
                print(f"LATE_MS {late}" if late >= 0 else f"EARLY_MS {-late}", flush=True)
                return
        raise SystemExit("the delayed message never arrived")
    finally:
        producer.shutdown()
        consumer.shutdown()


class FailOnce(MessageListener):
    def __init__(self):
        self.started = None
        self.done = threading.Event()

    def consume(self, message):
        now = time.time()
        if self.started is None:
            self.started = now
        print(f"ATTEMPT {message.delivery_attempt} {int((now - self.started) * 1000)}", flush=True)
        if message.delivery_attempt < 2:
            return ConsumeResult.FAILURE
        self.done.set()
        return ConsumeResult.SUCCESS


def retry(endpoint, topic, group):
    producer = Producer(config(endpoint), (topic,))
    producer.startup()
    msg = Message()
    msg.topic = topic
    msg.body = b"flaky"
    producer.send(msg)
    producer.shutdown()
    listener = FailOnce()
    consumer = PushConsumer(config(endpoint), group, listener, {topic: FilterExpression("*")})
    consumer.startup()
    try:
        if not listener.done.wait(DEADLINE_SECONDS):
            raise SystemExit("the message was not redelivered")
    finally:
        consumer.shutdown()


class Ordered(MessageListener):
    def __init__(self, expected):
        self.expected = expected
        self.lock = threading.Lock()
        self.order = {}
        self.failed = set()
        self.done = threading.Event()

    def consume(self, message):
        group, seq = message.body.decode().split(":")
        with self.lock:
            if seq == "1" and group not in self.failed:
                self.failed.add(group)
                return ConsumeResult.FAILURE
            self.order.setdefault(group, []).append(int(seq))
            if sum(len(v) for v in self.order.values()) >= self.expected:
                self.done.set()
        return ConsumeResult.SUCCESS


def fifo(endpoint, topic, group, per_group):
    producer = Producer(config(endpoint), (topic,))
    producer.startup()
    try:
        for seq in range(per_group):
            for g in ("G0", "G1", "G2"):
                msg = Message()
                msg.topic = topic
                msg.body = f"{g}:{seq}".encode()
                msg.message_group = g
                producer.send(msg)
    finally:
        producer.shutdown()
    listener = Ordered(3 * per_group)
    consumer = PushConsumer(config(endpoint), group, listener, {topic: FilterExpression("*")})
    consumer.startup()
    try:
        if not listener.done.wait(DEADLINE_SECONDS):
            raise SystemExit(f"timed out: {listener.order}")
    finally:
        consumer.shutdown()
    for g in sorted(listener.order):
        print(f"ORDER {g} {','.join(str(s) for s in listener.order[g])}", flush=True)


class CommitOnCheck(TransactionChecker):
    def check(self, message):
        print(f"CHECKED {message.body.decode()}", flush=True)
        return TransactionResolution.COMMIT


def txn(endpoint, topic, group):
    consumer = SimpleConsumer(config(endpoint), group, {topic: FilterExpression("*")}, await_duration=3)
    consumer.startup()
    producer = Producer(config(endpoint), (topic,), CommitOnCheck())
    producer.startup()
    try:
        for body, end in (("committed", "commit"), ("rolled-back", "rollback"), ("checked", None)):
            msg = Message()
            msg.topic = topic
            msg.body = body.encode()
            transaction = producer.begin_transaction()
            producer.send(msg, transaction)
            if end == "commit":
                transaction.commit()
            elif end == "rollback":
                transaction.rollback()
        got = set()
        deadline = time.time() + DEADLINE_SECONDS
        while len(got) < 2 and time.time() < deadline:
            for m in consumer.receive(16, 15):
                consumer.ack(m)
                body = m.body.decode()
                if body not in got:
                    got.add(body)
                    print(f"GOT {body}", flush=True)
        # Anything else (the rolled-back one) would show up now.
        for m in consumer.receive(16, 15):
            consumer.ack(m)
            print(f"GOT {m.body.decode()}", flush=True)
    finally:
        producer.shutdown()
        consumer.shutdown()


def invisible(endpoint, topic, group):
    producer = Producer(config(endpoint), (topic,))
    producer.startup()
    msg = Message()
    msg.topic = topic
    msg.body = b"slow job"
    producer.send(msg)
    producer.shutdown()
    consumer = SimpleConsumer(config(endpoint), group, {topic: FilterExpression("*")}, await_duration=3)
    consumer.startup()
    try:
        try:
            consumer.receive(1, 5)
            raise SystemExit("a 5 s invisible duration was accepted")
        except SystemExit:
            raise
        except Exception as e:  # the broker's ILLEGAL_INVISIBLE_TIME
            print(f"REFUSED {type(e).__name__}", flush=True)
        deadline = time.time() + DEADLINE_SECONDS
        while time.time() < deadline:
            for m in consumer.receive(1, 10):
                print(f"ATTEMPT {m.delivery_attempt}", flush=True)
                if m.delivery_attempt == 1:
                    consumer.change_invisible_duration(m, 1)
                else:
                    consumer.ack(m)
                    return
        raise SystemExit("the message never came back")
    finally:
        consumer.shutdown()


def main(argv):
    mode = argv[1]
    if mode == "send":
        send(argv[2], argv[3], int(argv[4]), int(argv[5]) if len(argv) > 5 else 0)
    elif mode == "simple":
        simple(argv[2], argv[3], argv[4], argv[5], int(argv[6]))
    elif mode == "push":
        push(argv[2], argv[3], argv[4], argv[5], int(argv[6]))
    elif mode == "delay":
        delay(argv[2], argv[3], argv[4], int(argv[5]))
    elif mode == "retry":
        retry(argv[2], argv[3], argv[4])
    elif mode == "invisible":
        invisible(argv[2], argv[3], argv[4])
    elif mode == "txn":
        txn(argv[2], argv[3], argv[4])
    elif mode == "fifo":
        fifo(argv[2], argv[3], argv[4], int(argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
