//! What the tool's black-box tests share: a ringmq broker in this process
//! on a loopback port 0, one shard.

/// Start the broker; it stops when dropped.
pub fn broker() -> ringmq::Broker {
    let config = ringmq::Config::from_args(
        [
            "ringmq",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--io-memory-kib",
            "256",
        ]
        .map(String::from),
    )
    .expect("a valid config");
    ringmq::Broker::start(config).expect("the broker starts")
}
