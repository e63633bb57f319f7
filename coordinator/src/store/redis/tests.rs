use super::*;
use moralsweep_common::Mode;
use moralsweep_testsupport::{Persistence, RedisServer};

/// A call repeated with the same operation id (what a retry after a
/// lost reply does) returns the first outcome and changes nothing.
#[tokio::test]
async fn repeated_operation_returns_the_first_outcome() {
    let server = RedisServer::start_with(Persistence::None);
    let s = RedisStore::connect(&server.url()).await.unwrap();
    let u = UnitKey {
        sweep: "s".into(),
        model: "m".into(),
        mode: Mode::Persona,
    };
    let g1 = s
        .grant_op(&u, 10, 3, 1, "l1", "w", 99, "op-g", false)
        .await
        .unwrap();
    assert_eq!(g1, vec![0, 1, 2]);
    assert_eq!(
        s.grant_op(&u, 10, 3, 1, "l1", "w", 99, "op-g", false)
            .await
            .unwrap(),
        g1
    );
    assert_eq!(s.leases().await.unwrap().len(), 1);
    let batch = vec![(0, b"a".to_vec()), (1, b"b".to_vec())];
    let r1 = s
        .record_op(&u, Some("l1"), &batch, "op-r", None)
        .await
        .unwrap();
    assert_eq!(r1, vec![true, true]);
    assert_eq!(
        s.record_op(&u, Some("l1"), &batch, "op-r", None)
            .await
            .unwrap(),
        r1
    );
    assert_eq!(s.done_count(&u).await.unwrap(), 2);
    // A new operation is a genuine duplicate report.
    assert_eq!(
        s.record(&u, Some("l1"), &batch).await.unwrap(),
        vec![false, false]
    );
    // The empty-grant outcome replays too.
    let e = s
        .grant_op(&u, 0, 3, 1, "l2", "w", 99, "op-e", false)
        .await
        .unwrap();
    assert!(e.is_empty());
    assert!(s
        .grant_op(&u, 0, 3, 1, "l2", "w", 99, "op-e", false)
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn keys_escape_tag_and_separator_characters() {
    assert_eq!(sweep_prefix("a{b}:c%"), "ms:{a%7Bb%7D%3Ac%25}:");
    let u = UnitKey {
        sweep: "s".into(),
        model: "org/m:1".into(),
        mode: Mode::SelfMode,
    };
    assert_eq!(unit_part(&u), "org/m%3A1:self");
}
