//! Regressions (issue 6): each test pins a broker bug the black-box suite
//! found, now fixed (a shared-subscription message lost when a shard
//! lost its last member before the publishing shard heard).

mod common;

use common::*;

/// `$share/g/...` with one member per shard; the member on shard 1 (session
/// expiry 0) leaves with DISCONNECT and the test waits until the broker has
/// closed its socket. A QoS 1 message published right after (from shard 0,
/// PUBACKed) must reach the remaining member on shard 0. Seen lost: the
/// publishing shard still picks shard 1 for the group and shard 1, with no
/// member left, drops it.
#[test]
fn shared_message_right_after_a_member_left_is_not_lost() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut stay, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("sl-stay-", 0)));
    assert_eq!(stay.raw.subscribe(1, &[("$share/g/sl/t", 1)]), [1]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("sl-p-", 0)));
    let mut lost = Vec::new();
    for i in 0..200u16 {
        let id = id_on_shard(&format!("sl-leave{i}-"), 1);
        let (mut leaving, _) = RawClient::connected(addr, &ConnectOpts::v5(&id));
        assert_eq!(leaving.subscribe(1, &[("$share/g/sl/t", 1)]), [1]);
        leaving.send(&disconnect_v5(0)).unwrap();
        leaving.expect_closed(PROMPT, "DISCONNECT");
        publisher.publish1("sl/t", i.to_string().as_bytes(), i + 1);
        // The sentinel goes after it; both must reach `stay`.
        publisher.publish1("sl/t", b"sentinel", 1000 + i);
        let first = stay.next(PROMPT).payload;
        if first == b"sentinel" {
            lost.push(i);
        } else {
            assert_eq!(first, i.to_string().as_bytes());
            assert_eq!(stay.next(PROMPT).payload, b"sentinel");
        }
    }
    assert!(
        lost.is_empty(),
        "{} of 200 messages published right after the shard-1 member left were lost: {lost:?}",
        lost.len()
    );
}
