//! Tests of the fault plans.

use std::time::Duration;

use super::*;

fn spec(text: &str) -> FaultSpec {
    FaultSpec::parse(text).unwrap().unwrap()
}

fn error(text: &str) -> String {
    FaultSpec::parse(text).unwrap_err()
}

fn plan(text: &str) -> Faults {
    Faults::new(Some(&spec(text)), "repo")
}

#[test]
fn an_empty_spec_means_no_faults() {
    assert_eq!(FaultSpec::parse(""), Ok(None));
    assert_eq!(FaultSpec::parse("  "), Ok(None));
    assert!(Faults::new(None, "repo").decide(Op::Read, "x").is_none());
}

#[test]
fn a_good_spec_is_parsed() {
    let s = spec("write-fail=0.5, short-read=1,slow=0 ,seed=42,list-fail=.25");
    assert_eq!(s.probability(FaultKind::WriteFail), 0.5);
    assert_eq!(s.probability(FaultKind::ShortRead), 1.0);
    assert_eq!(s.probability(FaultKind::Slow), 0.0);
    assert_eq!(s.probability(FaultKind::ListFail), 0.25);
    assert_eq!(s.probability(FaultKind::ReadFail), 0.0);
    assert_eq!(s.seed, Some(42));
    for kind in FaultKind::ALL {
        let s = spec(&format!("{}=0.125", kind.name()));
        assert_eq!(s.probability(kind), 0.125, "{kind:?}");
        assert_eq!(s.seed, None);
    }
}

#[test]
fn a_bad_spec_is_refused_naming_the_item() {
    for (text, said) in [
        (
            "write-fail=0.5,bogus=0.1",
            "'bogus=0.1': unknown fault kind 'bogus'",
        ),
        ("read-fail=1.5", "'read-fail=1.5': the probability must be"),
        (
            "read-fail=-0.1",
            "'read-fail=-0.1': the probability must be",
        ),
        (
            "read-fail=lots",
            "'read-fail=lots': the probability must be",
        ),
        ("read-fail=NaN", "'read-fail=NaN': the probability must be"),
        ("read-fail=", "'read-fail=': the probability must be"),
        ("slow=0.1,slow=0.2", "'slow=0.2': 'slow' is given twice"),
        ("seed=1,seed=2", "'seed=2': 'seed' is given twice"),
        ("seed=-1", "'seed=-1': the seed must be"),
        ("seed=x", "'seed=x': the seed must be"),
        ("write-fail", "'write-fail': expected KIND=PROBABILITY"),
        ("write-fail=0.1,", "'': expected KIND=PROBABILITY"),
    ] {
        let e = error(text);
        assert!(e.contains(said), "{text}: {e}");
        assert!(e.starts_with("bad item"), "{text}: {e}");
    }
    assert!(error("x=1").contains("write-fail, write-lost-ack"));
}

/// The decisions of a fixed sequence of operations.
fn decisions(faults: &Faults) -> Vec<Decision> {
    let ops = [Op::Write, Op::Read, Op::List, Op::Delete, Op::Exists];
    (0..200)
        .map(|i| faults.decide(ops[i % ops.len()], &format!("k{i}")).unwrap())
        .collect()
}

const EVERY_KIND: &str = "write-fail=0.3,write-lost-ack=0.3,delete-fail=0.3,read-fail=0.3,\
                          short-read=0.3,slow=0.3,stale-list=0.3,list-fail=0.3";

#[test]
fn the_same_seed_gives_the_same_decisions() {
    let a = decisions(&plan(&format!("{EVERY_KIND},seed=7")));
    let b = decisions(&plan(&format!("{EVERY_KIND},seed=7")));
    let c = decisions(&plan(&format!("{EVERY_KIND},seed=8")));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Kinds that are off draw nothing.
    let with_zero = decisions(&plan("read-fail=0.5,slow=0,seed=3"));
    let without = decisions(&plan("read-fail=0.5,seed=3"));
    assert_eq!(with_zero, without);
    // Every kind happens, and not every time.
    for kind in FaultKind::ALL {
        let hits = a
            .iter()
            .filter(|d| {
                d.fail_before == Some(kind)
                    || d.fail_after == Some(kind)
                    || (kind == FaultKind::ShortRead && d.keep.is_some())
                    || (kind == FaultKind::Slow && d.delay.is_some())
                    || (kind == FaultKind::StaleList && d.late.is_some())
            })
            .count();
        assert!(hits > 0 && hits < 100, "{kind:?}: {hits}");
    }
}

#[test]
fn probability_zero_never_and_one_always() {
    let never = plan(
        "write-fail=0,write-lost-ack=0,delete-fail=0,read-fail=0,short-read=0,slow=0,\
         stale-list=0,list-fail=0",
    );
    assert!(decisions(&never).iter().all(Decision::is_clean));
    let always = decisions(&plan(
        "write-fail=1,delete-fail=1,read-fail=1,list-fail=1,slow=1",
    ));
    for d in &always {
        assert!(d.fail_before.is_some(), "{d:?}");
        let delay = d.delay.unwrap();
        assert!(delay >= Duration::from_millis(1) && delay <= Duration::from_millis(300));
    }
}

#[test]
fn an_injected_failure_names_itself_the_operation_and_the_key() {
    let faults = plan("write-fail=1");
    let mut ran = false;
    let e = faults
        .run(Op::Write, "index/abc", || {
            ran = true;
            Ok(())
        })
        .unwrap_err();
    assert!(!ran, "a failed write ran");
    assert_eq!(
        e.to_string(),
        "repo: cannot write index/abc: injected storage fault (write-fail: nothing was done)"
    );
    let mut ran = false;
    let e = plan("write-lost-ack=1")
        .run(Op::Write, "locks/1", || {
            ran = true;
            Ok(())
        })
        .unwrap_err();
    assert!(ran, "a lost acknowledgement's write did not run");
    assert!(e
        .to_string()
        .contains("cannot write locks/1: injected storage fault"));
    let e = plan("read-fail=1")
        .run(Op::Exists, "clients/c", || Ok(true))
        .unwrap_err();
    assert!(e.to_string().contains("cannot check clients/c: injected"));
    let e = plan("list-fail=1")
        .run(Op::List, "locks/", || Ok(vec!["a".to_string()]))
        .unwrap_err();
    assert!(e.to_string().contains("cannot list locks/: injected"));
    let e = plan("delete-fail=1")
        .run(Op::Delete, "locks/2", || Ok(()))
        .unwrap_err();
    assert!(e.to_string().contains("cannot delete locks/2: injected"));
}

#[test]
fn a_short_read_returns_a_strict_prefix_without_an_error() {
    let faults = plan("short-read=1,seed=5");
    let data: Vec<u8> = (0..=255).collect();
    let mut lengths = std::collections::HashSet::new();
    for _ in 0..100 {
        let got = faults.run(Op::Read, "k", || Ok(data.clone())).unwrap();
        assert!(got.len() < data.len());
        assert_eq!(got[..], data[..got.len()]);
        lengths.insert(got.len());
    }
    assert!(lengths.len() > 10, "cut at too few points: {lengths:?}");
    // An empty object stays empty; listings and checks are not cut.
    assert!(faults
        .run(Op::Read, "k", || Ok(Vec::<u8>::new()))
        .unwrap()
        .is_empty());
    let mut buffer = opendal::Buffer::from(data.clone());
    buffer = faults.run(Op::Read, "k", || Ok(buffer)).unwrap();
    assert!(buffer.len() < data.len());
    assert_eq!(buffer.to_vec()[..], data[..buffer.len()]);
}

#[test]
fn a_stale_listing_keeps_what_was_there_and_returns_late() {
    let faults = plan("stale-list=1,seed=9");
    let start = std::time::Instant::now();
    let listed = faults
        .run(Op::List, "locks/", || {
            Ok(vec!["a".to_string(), "b".to_string()])
        })
        .unwrap();
    assert_eq!(listed, ["a", "b"]);
    assert!(start.elapsed() >= Duration::from_millis(1));
    assert!(faults.allows(Op::Read, "k"), "a listing fault hit a read");
}
