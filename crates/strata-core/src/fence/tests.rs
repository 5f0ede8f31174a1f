//! Fences as units: what each invalidation names, what writes wait for,
//! how long the log keeps what.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::state::MIN_KEPT;
use super::*;
use crate::entry::EntryKind;

fn entry(key: &str, name: &str, user: Option<&str>, tags: &[&str]) -> Arc<Entry> {
    Arc::new(Entry {
        key: key.to_owned(),
        name: name.to_owned(),
        user: user.map(str::to_owned),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        stored_at: SystemTime::UNIX_EPOCH,
        ttl: Duration::from_secs(60),
        stale: Duration::ZERO,
        kind: EntryKind::Value(Bytes::new()),
    })
}

fn detail() -> Arc<Entry> {
    entry(
        "k:/m/7/",
        "/m/7/?lang=en",
        Some("alice"),
        &["materials", "m:7"],
    )
}

#[test]
fn an_invalidation_fences_exactly_what_it_names() {
    let cases = [
        (Invalidation::Key("k:/m/7/".into()), true),
        (Invalidation::Key("k:/m/8/".into()), false),
        (Invalidation::Url("/m/7/".into()), true),
        (Invalidation::Url("/m/7/?other=1".into()), true),
        (Invalidation::Url("http://h/m/7/".into()), true),
        (Invalidation::Url("/m/70/".into()), false),
        (Invalidation::Tag("m:7".into()), true),
        (Invalidation::Tag("m:8".into()), false),
        (
            Invalidation::Tags(vec!["x".into(), "materials".into()]),
            true,
        ),
        (Invalidation::Tags(vec!["x".into(), "y".into()]), false),
        (Invalidation::User("alice".into()), true),
        (Invalidation::User("bob".into()), false),
        (Invalidation::Prefix("/m/".into()), true),
        (Invalidation::Prefix("/n/".into()), false),
        (Invalidation::All, true),
    ];
    for (what, expected) in cases {
        let fences = Arc::new(Fences::default());
        let ticket = fences.ticket_now();
        assert!(fences.admit(&ticket, &[detail()]).is_some(), "{what:?}");
        assert!(fences.fence(&what).is_none(), "nothing writing: {what:?}");
        let fenced = fences.admit(&ticket, &[detail()]).is_none();
        assert_eq!(fenced, expected, "{what:?}");
        assert_eq!(names(&what, Names::of(&detail())), expected, "{what:?}");
        // A fill that starts after the invalidation is not fenced by it.
        assert!(fences.admit(&fences.ticket_now(), &[detail()]).is_some());
    }
}

#[test]
fn one_named_entry_fences_the_whole_write() {
    let fences = Arc::new(Fences::default());
    let ticket = fences.ticket_now();
    fences.fence(&Invalidation::Tag("rule-only".into()));
    let rule = entry("k:/m/", "/m/", None, &["rule-only"]);
    assert!(fences.admit(&ticket, &[detail(), rule]).is_none());
}

#[tokio::test]
async fn an_invalidation_waits_only_for_the_writes_it_names() {
    let fences = Arc::new(Fences::default());
    let ticket = fences.ticket_now();
    let guard = fences.admit(&ticket, &[detail()]).unwrap();
    assert!(fences.fence(&Invalidation::Tag("other".into())).is_none());
    let wait = fences.fence(&Invalidation::Tag("m:7".into())).unwrap();
    let waiting = tokio::spawn(wait);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished(), "must wait for the named write");
    drop(guard);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("released when the write ends")
        .unwrap();
}

#[test]
fn a_flight_is_fenced_by_the_tags_its_path_was_last_stored_with() {
    let fences = Arc::new(Fences::default());
    let flight = Names {
        key: "k:/m/7/",
        name: "/m/7/",
        user: None,
        tags: &[],
    };
    let start = fences.start().seq();
    fences.fence(&Invalidation::Tag("m:7".into()));
    assert!(!fences.flight_fenced(start, flight), "nothing learnt yet");
    let ticket = fences.ticket_now();
    let mut stored = (*entry("k:/m/7/", "/m/7/?page=2", None, &["m:7"])).clone();
    stored.kind = EntryKind::Response(crate::entry::CachedResponse::new(
        http::StatusCode::OK,
        http::HeaderMap::new(),
        Bytes::new(),
        SystemTime::UNIX_EPOCH,
    ));
    drop(fences.admit(&ticket, &[Arc::new(stored)]));
    let start = fences.start().seq();
    fences.fence(&Invalidation::Tag("m:8".into()));
    assert!(!fences.flight_fenced(start, flight), "another tag");
    fences.fence(&Invalidation::Tag("m:7".into()));
    assert!(fences.flight_fenced(start, flight), "its path's tag");
}

#[test]
fn the_log_keeps_only_what_open_tickets_need() {
    let fences = Arc::new(Fences::default());
    for i in 0..(MIN_KEPT * 3) {
        fences.fence(&Invalidation::Tag(format!("t{i}")));
    }
    assert_eq!(fences.logged(), MIN_KEPT, "no ticket open");
    let ticket = fences.ticket_now();
    for i in 0..(MIN_KEPT * 3) {
        fences.fence(&Invalidation::Tag(format!("u{i}")));
    }
    assert_eq!(fences.logged(), MIN_KEPT * 3, "kept for the ticket");
    assert!(!fences.is_fenced(&ticket, Names::of(&detail())));
    assert!(fences.is_fenced(&ticket, Names::of(&entry("k", "/x", None, &["u5"]))));
    drop(ticket);
    fences.fence(&Invalidation::Tag("last".into()));
    assert_eq!(fences.logged(), MIN_KEPT);
    let state = fences.lock();
    assert!(
        state.tags.len() <= MIN_KEPT,
        "the index shrinks with the log"
    );
}

#[test]
fn a_ticket_older_than_the_log_is_fenced_by_anything() {
    let fences = Arc::new(Fences::default());
    let start = fences.start();
    for i in 0..(MIN_KEPT + 10) {
        fences.fence(&Invalidation::Tag(format!("t{i}")));
    }
    let late = fences.ticket(start);
    assert!(fences.admit(&late, &[detail()]).is_none());
}

#[test]
fn named_between_counts_only_invalidations_in_the_range() {
    let fences = Arc::new(Fences::default());
    let leader = fences.start().seq();
    fences.fence(&Invalidation::Tag("m:7".into()));
    let after_first = fences.start().seq();
    fences.fence(&Invalidation::Tag("other".into()));
    let waiter = fences.start().seq();
    fences.fence(&Invalidation::Tag("m:7".into()));
    let entry = detail();
    let what = Names::of(&entry);
    assert!(
        fences.named_between(leader, waiter, what),
        "the first names it"
    );
    assert!(
        !fences.named_between(after_first, waiter, what),
        "only `other` in between; the last came after the waiter looked"
    );
    assert!(fences.named_between(after_first, fences.start().seq(), what));
}

mod model {
    //! The indexed fence against its plain definition: for any sequence of
    //! invalidations and any entry, "named since the ticket" is "some
    //! invalidation logged after the ticket names the entry".

    use proptest::prelude::*;

    use super::*;

    fn invalidation() -> impl Strategy<Value = Invalidation> {
        let name = prop::sample::select(vec!["a", "b", "c"]);
        prop_oneof![
            name.clone()
                .prop_map(|n| Invalidation::Key(format!("k:/{n}"))),
            name.clone()
                .prop_map(|n| Invalidation::Url(format!("/{n}/?q=1"))),
            name.clone()
                .prop_map(|n| Invalidation::Tag(format!("t{n}"))),
            prop::collection::vec(name.clone(), 0..3).prop_map(|names| {
                Invalidation::Tags(names.iter().map(|n| format!("t{n}")).collect())
            }),
            name.clone()
                .prop_map(|n| Invalidation::User(format!("u{n}"))),
            name.prop_map(|n| Invalidation::Prefix(format!("/{n}"))),
            Just(Invalidation::All),
        ]
    }

    fn target() -> impl Strategy<Value = Arc<Entry>> {
        let name = || prop::sample::select(vec!["a", "b", "c"]);
        (
            name(),
            name(),
            prop::option::of(name()),
            prop::collection::vec(name(), 0..3),
        )
            .prop_map(|(key, path, user, tags)| {
                let user = user.map(|u| format!("u{u}"));
                let tags: Vec<String> = tags.iter().map(|t| format!("t{t}")).collect();
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                entry(
                    &format!("k:/{key}"),
                    &format!("/{path}/?page=2"),
                    user.as_deref(),
                    &tags,
                )
            })
    }

    proptest! {
        #[test]
        fn the_index_agrees_with_the_definition(
            before in prop::collection::vec(invalidation(), 0..6),
            after in prop::collection::vec(invalidation(), 0..6),
            target in target(),
        ) {
            let fences = Arc::new(Fences::default());
            for what in &before {
                fences.fence(what);
            }
            let ticket = fences.ticket_now();
            for what in &after {
                fences.fence(what);
            }
            let expected = after.iter().any(|what| names(what, Names::of(&target)));
            prop_assert_eq!(fences.is_fenced(&ticket, Names::of(&target)), expected);
            prop_assert_eq!(
                fences.named_between(ticket.seq(), fences.start().seq(), Names::of(&target)),
                expected
            );
            prop_assert_eq!(fences.admit(&ticket, &[target]).is_none(), expected);
        }
    }
}
