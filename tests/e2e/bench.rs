//! tcpy-bench against a real host: its runs complete, count right answers, and count
//! wrong and error answers apart. Also the smoke run that keeps the load generator
//! from rotting. Nothing here is timed: figures belong in docs/performance.md.

use std::time::Duration;

use serde_json::json;
use tcpy_bench::{Plan, Stop};
use tcpy_protocol::{Encoding, Framing};
use tcpy_tests::{TestHost, object};

fn add_plan(host: &TestHost, cmd: &str) -> Plan {
    let mut plan = Plan::new(host.addr, cmd, object(json!({"x": 1, "y": 2})));
    plan.expect = object(json!({"success": true, "solution": 3}));
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxed_and_native_add_answer_every_request_right_in_every_mode() {
    let host = TestHost::start_native_baseline().await;
    let modes = [
        (Framing::Frame, Encoding::Json),
        (Framing::Frame, Encoding::Msgpack),
        (Framing::Line, Encoding::Json),
    ];
    for cmd in ["add", "native_add"] {
        for (framing, encoding) in modes {
            let mut plan = add_plan(&host, cmd);
            (plan.framing, plan.encoding) = (framing, encoding);
            (plan.connections, plan.depth) = (4, 4);
            plan.warmup = Duration::from_millis(20);
            plan.stop.duration = Duration::from_millis(150);
            let report = tcpy_bench::run(&plan).await.expect("the run completes");
            assert!(report.is_clean(), "{cmd} {framing:?}/{encoding:?}: {report}");
            let latency = report.latency.expect("right answers have latencies");
            assert!(
                latency.p50_us > 0.0 && latency.max_us >= latency.p99_us,
                "{report}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_budget_is_kept_exactly() {
    let host = TestHost::start_native_baseline().await;
    let mut plan = add_plan(&host, "native_echo");
    plan.expect = object(json!({"success": true, "x": 1}));
    (plan.connections, plan.depth) = (3, 8);
    plan.stop = Stop {
        duration: Duration::from_secs(60),
        requests: Some(500),
    };
    let report = tcpy_bench::run(&plan).await.expect("the run completes");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.right, 500, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_error_answers_are_counted_not_timed() {
    let host = TestHost::start_native_baseline().await;
    let mut wrong = add_plan(&host, "add");
    wrong.expect = object(json!({"solution": 4}));
    wrong.stop.requests = Some(20);
    let report = tcpy_bench::run(&wrong).await.expect("the run completes");
    assert_eq!((report.right, report.wrong), (0, 20), "{report}");
    assert!(report.latency.is_none() && !report.is_clean(), "{report}");
    assert!(report.first_problem.is_some(), "{report}");

    let mut bad = add_plan(&host, "native_add");
    bad.params = object(json!({"x": 1}));
    bad.stop.requests = Some(20);
    let report = tcpy_bench::run(&bad).await.expect("the run completes");
    assert_eq!(report.errors.get("bad_request"), Some(&20), "{report}");
    assert_eq!(report.right, 0, "{report}");
}

#[tokio::test]
async fn the_native_baseline_is_off_unless_asked_for() {
    let host = TestHost::start().await;
    let mut plan = add_plan(&host, "native_add");
    plan.stop.requests = Some(5);
    let report = tcpy_bench::run(&plan).await.expect("the run completes");
    assert_eq!(report.errors.get("unknown_command"), Some(&5), "{report}");
}
