//! The log buses' behaviour. The shared checks take an `Arc<dyn LogBus>` and run against the
//! in-process bus always and against Kafka when `CLOUDRUNR_TEST_KAFKA_BROKERS` names a broker
//! (`scripts/services start` prints it). Without it the Kafka tests are skipped, except in CI
//! (`CI`) or with `CLOUDRUNR_REQUIRE_SERVICES=1`, where they fail. Each Kafka test uses topics and
//! a consumer group of its own.

use crate::{InProcessBus, KafkaBus, KafkaConfig};
use async_trait::async_trait;
use platform::bus::*;
use platform::model::{DeploymentState, LogLine, LogStream};
use platform::{DeploymentId, ProjectId, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// Longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(30);
/// How long nothing must happen, where nothing should.
const QUIET: Duration = Duration::from_secs(1);

fn line(id: &DeploymentId, seq: u64) -> BuildEvent {
    BuildEvent {
        deployment_id: id.clone(),
        body: EventBody::Log(LogLine {
            seq,
            ts: Timestamp::now(),
            stream: LogStream::Stdout,
            text: format!("line {seq}"),
        }),
    }
}

fn state(id: &DeploymentId, state: DeploymentState) -> BuildEvent {
    BuildEvent {
        deployment_id: id.clone(),
        body: EventBody::State(StateChange::new(state)),
    }
}

/// What identifies an event here: its deployment and its line number (0 for a state change).
fn ident(event: &BuildEvent) -> (DeploymentId, u64) {
    let seq = match &event.body {
        EventBody::Log(line) => line.seq,
        EventBody::State(_) => 0,
    };
    (event.deployment_id.clone(), seq)
}

/// Takes batches until `n` events came.
async fn collect(sub: &mut dyn DurableSubscription, n: usize) -> Vec<BuildEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = tokio::time::timeout(WAIT, sub.next_batch(n - got.len()))
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events came", got.len()))
            .expect("next_batch");
        assert!(!batch.is_empty(), "next_batch returned nothing");
        assert!(batch.len() <= n - got.len(), "next_batch returned more than asked");
        got.extend(batch);
    }
    got
}

async fn next_watched(watch: &mut broadcast::Receiver<Watched>) -> Watched {
    tokio::time::timeout(WAIT, watch.recv())
        .await
        .expect("nothing watched in time")
        .expect("watch receiver")
}

async fn assert_quiet(watch: &mut broadcast::Receiver<Watched>) {
    if let Ok(got) = tokio::time::timeout(QUIET, watch.recv()).await {
        panic!("expected nothing, watched {got:?}");
    }
}

// ---- Checks every bus must pass ----

async fn check_watchers_see_events_only_after_ack(bus: Arc<dyn LogBus>) {
    let mut sub = bus.subscribe_durable().await.unwrap();
    let mut watch = bus.watch();
    let id = DeploymentId::generate();
    bus.publish(vec![line(&id, 1), line(&id, 2)]).await.unwrap();
    let batch = collect(&mut *sub, 2).await;
    assert_eq!(
        batch.iter().map(ident).collect::<Vec<_>>(),
        [(id.clone(), 1), (id.clone(), 2)]
    );
    assert_quiet(&mut watch).await;
    sub.ack().await.unwrap();
    for seq in 1..=2 {
        match next_watched(&mut watch).await {
            Watched::Event(e) => assert_eq!(ident(&e), (id.clone(), seq)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn check_order_is_kept_per_deployment(bus: Arc<dyn LogBus>) {
    const DEPLOYMENTS: usize = 30;
    const LINES: u64 = 40;
    let mut sub = bus.subscribe_durable().await.unwrap();
    let ids: Vec<DeploymentId> = (0..DEPLOYMENTS).map(|_| DeploymentId::generate()).collect();
    // One publisher per deployment, all at once, in small batches, as builders do.
    let publishers: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.publish(vec![state(&id, DeploymentState::Building)]).await.unwrap();
                for chunk in (1..=LINES).collect::<Vec<_>>().chunks(7) {
                    bus.publish(chunk.iter().map(|&seq| line(&id, seq)).collect())
                        .await
                        .unwrap();
                }
                bus.publish(vec![state(&id, DeploymentState::Ready)]).await.unwrap();
            })
        })
        .collect();
    let total = DEPLOYMENTS * (LINES as usize + 2);
    let got = collect(&mut *sub, total).await;
    for publisher in publishers {
        publisher.await.unwrap();
    }
    sub.ack().await.unwrap();
    let mut per: BTreeMap<DeploymentId, Vec<BuildEvent>> = BTreeMap::new();
    for event in got {
        per.entry(event.deployment_id.clone()).or_default().push(event);
    }
    assert_eq!(per.len(), DEPLOYMENTS);
    for (id, events) in per {
        assert!(
            matches!(&events[0].body, EventBody::State(s) if s.state == DeploymentState::Building),
            "{id}: first event"
        );
        assert!(
            matches!(&events[events.len() - 1].body, EventBody::State(s) if s.state == DeploymentState::Ready),
            "{id}: last event"
        );
        let seqs: Vec<u64> = events[1..events.len() - 1].iter().map(|e| ident(e).1).collect();
        assert_eq!(seqs, (1..=LINES).collect::<Vec<_>>(), "{id}: lines out of order");
    }
}

async fn check_every_watcher_sees_events_and_notices(bus: Arc<dyn LogBus>) {
    let mut watchers = [bus.watch(), bus.watch()];
    let mut sub = bus.subscribe_durable().await.unwrap();
    let id = DeploymentId::generate();
    let project = ProjectId::generate();
    bus.publish(vec![line(&id, 1), line(&id, 2), state(&id, DeploymentState::Ready)])
        .await
        .unwrap();
    collect(&mut *sub, 3).await;
    sub.ack().await.unwrap();
    bus.notify(Notice::RoutesChanged {
        project_id: project.clone(),
    })
    .await
    .unwrap();
    bus.notify(Notice::WorkAvailable).await.unwrap();
    for watch in &mut watchers {
        let (mut events, mut routes, mut work) = (Vec::new(), false, false);
        while events.len() < 3 || !routes || !work {
            match next_watched(watch).await {
                Watched::Event(e) => events.push(ident(&e)),
                Watched::Notice(Notice::RoutesChanged { project_id }) => routes |= project_id == project,
                Watched::Notice(Notice::WorkAvailable) => work = true,
            }
        }
        assert_eq!(events, [(id.clone(), 1), (id.clone(), 2), (id.clone(), 0)]);
    }
}

/// `notify` returns only after the process's listeners have seen the notice.
struct Recorder(std::sync::Mutex<Vec<Notice>>);

#[async_trait]
impl NoticeListener for Recorder {
    async fn on_notice(&self, notice: &Notice) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.lock().unwrap().push(notice.clone());
    }
}

// ---- The in-process bus ----

#[tokio::test]
async fn in_process_watchers_see_events_only_after_ack() {
    check_watchers_see_events_only_after_ack(Arc::new(InProcessBus::new())).await;
}

#[tokio::test]
async fn in_process_keeps_order_per_deployment() {
    check_order_is_kept_per_deployment(Arc::new(InProcessBus::new())).await;
}

#[tokio::test]
async fn in_process_every_watcher_sees_events_and_notices() {
    check_every_watcher_sees_events_and_notices(Arc::new(InProcessBus::new())).await;
}

#[tokio::test]
async fn in_process_has_a_single_durable_consumer() {
    let bus = InProcessBus::new();
    let _sub = bus.subscribe_durable().await.unwrap();
    assert!(matches!(bus.subscribe_durable().await, Err(BusError::ConsumerTaken)));
}

#[tokio::test]
async fn in_process_notify_awaits_listeners() {
    let bus = InProcessBus::new();
    let recorder = Arc::new(Recorder(Default::default()));
    bus.add_listener(recorder.clone());
    bus.notify(Notice::WorkAvailable).await.unwrap();
    assert_eq!(*recorder.0.lock().unwrap(), [Notice::WorkAvailable]);
}

#[test]
fn events_serialize_flat() {
    let id = DeploymentId::generate();
    let json = serde_json::to_value(line(&id, 7)).unwrap();
    assert_eq!(json["kind"], "log");
    assert_eq!(json["seq"], 7);
    assert_eq!(json["deployment_id"], id.as_str());
    let back: BuildEvent = serde_json::from_value(json).unwrap();
    assert!(matches!(back.body, EventBody::Log(LogLine { seq: 7, .. })));
}

// ---- Kafka ----

/// A configuration with fresh topics and group on the test broker, or `None` (skip) when there is
/// none and none is required.
fn kafka_config() -> Option<KafkaConfig> {
    let brokers = std::env::var("CLOUDRUNR_TEST_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.trim().is_empty());
    let Some(brokers) = brokers else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        let required = std::env::var("CLOUDRUNR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !ci && !required,
            "the Kafka log bus tests need a broker, but CLOUDRUNR_TEST_KAFKA_BROKERS is not set \
             (and CI or CLOUDRUNR_REQUIRE_SERVICES=1 forbids skipping them): start one with \
             `scripts/services start` and export the CLOUDRUNR_TEST_KAFKA_BROKERS it prints"
        );
        eprintln!("skipping a Kafka test: CLOUDRUNR_TEST_KAFKA_BROKERS is not set");
        return None;
    };
    let mut suffix = [0u8; 6];
    platform::ids::random_bytes(&mut suffix);
    let suffix = hex::encode(suffix);
    Some(KafkaConfig {
        brokers,
        events_topic: format!("cloudrunr-test.{suffix}.events"),
        notices_topic: format!("cloudrunr-test.{suffix}.notices"),
        consumer_group: format!("cloudrunr-test-{suffix}"),
        client_id: "cloudrunr-test".into(),
    })
}

/// The fresh configuration and a bus on it, or a skipped test.
macro_rules! kafka {
    () => {
        match kafka_config() {
            Some(config) => {
                let bus = KafkaBus::connect(config.clone())
                    .await
                    .expect("connect to the test Kafka");
                (config, Arc::new(bus))
            }
            None => return,
        }
    };
}

#[tokio::test]
async fn kafka_watchers_see_events_only_after_ack() {
    let (_, bus) = kafka!();
    check_watchers_see_events_only_after_ack(bus).await;
}

#[tokio::test]
async fn kafka_keeps_order_per_deployment() {
    let (_, bus) = kafka!();
    check_order_is_kept_per_deployment(bus).await;
}

#[tokio::test]
async fn kafka_every_watcher_sees_events_and_notices() {
    let (_, bus) = kafka!();
    check_every_watcher_sees_events_and_notices(bus).await;
}

#[tokio::test]
async fn kafka_notify_awaits_listeners() {
    let (_, bus) = kafka!();
    let recorder = Arc::new(Recorder(Default::default()));
    bus.add_listener(recorder.clone());
    bus.notify(Notice::WorkAvailable).await.unwrap();
    assert_eq!(*recorder.0.lock().unwrap(), [Notice::WorkAvailable]);
}

/// The first event a new subscription (same group) gets, after a marker is published.
async fn first_after_marker(bus: &Arc<KafkaBus>) -> (DeploymentId, BuildEvent) {
    let marker = DeploymentId::generate();
    bus.publish(vec![line(&marker, 1)]).await.unwrap();
    let mut sub = bus.subscribe_durable().await.unwrap();
    let first = collect(&mut *sub, 1).await.remove(0);
    (marker, first)
}

#[tokio::test]
async fn kafka_acked_events_are_not_delivered_again() {
    let (_, bus) = kafka!();
    let id = DeploymentId::generate();
    let mut sub = bus.subscribe_durable().await.unwrap();
    bus.publish((1..=10).map(|seq| line(&id, seq)).collect()).await.unwrap();
    assert_eq!(collect(&mut *sub, 10).await.len(), 10);
    sub.ack().await.unwrap();
    drop(sub);
    let (marker, first) = first_after_marker(&bus).await;
    assert_eq!(ident(&first), (marker, 1), "an acknowledged event came again");
}

#[tokio::test]
async fn kafka_unacked_events_are_delivered_again() {
    let (_, bus) = kafka!();
    let id = DeploymentId::generate();
    let mut sub = bus.subscribe_durable().await.unwrap();
    bus.publish((1..=10).map(|seq| line(&id, seq)).collect()).await.unwrap();
    // Written, acknowledged up to 5, then a crash before the next ack.
    let first = collect(&mut *sub, 5).await;
    sub.ack().await.unwrap();
    let second = collect(&mut *sub, 5).await;
    drop(sub);
    let mut again = bus.subscribe_durable().await.unwrap();
    let redelivered = collect(&mut *again, 5).await;
    assert_eq!(
        redelivered.iter().map(ident).collect::<Vec<_>>(),
        second.iter().map(ident).collect::<Vec<_>>()
    );
    assert_eq!(ident(&first[4]), (id.clone(), 5));
    assert_eq!(ident(&redelivered[0]), (id, 6));
}

#[tokio::test]
async fn kafka_malformed_messages_are_skipped() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let (config, bus) = kafka!();
    let mut watch = bus.watch();
    let mut sub = bus.subscribe_durable().await.unwrap();
    let id = DeploymentId::generate();
    let raw: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .unwrap();
    let bad: [Option<&[u8]>; 4] = [
        Some(b"not json"),
        Some(br#"{"deployment_id":"x","kind":"log"}"#),
        Some(br#"{"kind":"log","seq":1}"#),
        None,
    ];
    for payload in bad {
        let mut record = FutureRecord::<str, [u8]>::to(&config.events_topic).key(id.as_str());
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        raw.send(record, Duration::from_secs(5)).await.unwrap();
    }
    bus.publish(vec![line(&id, 1)]).await.unwrap();
    let got = collect(&mut *sub, 1).await;
    assert_eq!(ident(&got[0]), (id.clone(), 1));
    sub.ack().await.unwrap();
    match next_watched(&mut watch).await {
        Watched::Event(e) => assert_eq!(ident(&e), (id, 1)),
        other => panic!("unexpected {other:?}"),
    }
    drop(sub);
    // Committed past the malformed ones as well.
    let (marker, first) = first_after_marker(&bus).await;
    assert_eq!(ident(&first), (marker, 1));
}

#[tokio::test]
async fn kafka_every_process_sees_events_and_notices() {
    let (config, one) = kafka!();
    let other = Arc::new(KafkaBus::connect(config).await.expect("a second connect"));
    let (mut here, mut there) = (one.watch(), other.watch());
    let mut sub = one.subscribe_durable().await.unwrap();
    let id = DeploymentId::generate();
    other.publish(vec![line(&id, 1)]).await.unwrap();
    collect(&mut *sub, 1).await;
    sub.ack().await.unwrap();
    other.notify(Notice::WorkAvailable).await.unwrap();
    for watch in [&mut here, &mut there] {
        let (mut event, mut notice) = (false, false);
        while !event || !notice {
            match next_watched(watch).await {
                Watched::Event(e) => event |= ident(&e) == (id.clone(), 1),
                Watched::Notice(n) => notice |= n == Notice::WorkAvailable,
            }
        }
    }
}

#[tokio::test]
async fn kafka_dropping_the_bus_ends_subscriptions_and_watchers() {
    let (_, bus) = kafka!();
    let mut watch = bus.watch();
    let mut sub = bus.subscribe_durable().await.unwrap();
    drop(bus);
    let next = tokio::time::timeout(WAIT, sub.next_batch(10))
        .await
        .expect("next_batch ends");
    assert!(matches!(next, Err(BusError::Closed)), "{next:?}");
    let watched = tokio::time::timeout(WAIT, watch.recv()).await.expect("the watch ends");
    assert!(matches!(watched, Err(RecvError::Closed)), "{watched:?}");
}

/// Runs without a broker: nothing listens on the port.
#[tokio::test]
async fn kafka_connect_fails_without_a_broker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let result = KafkaBus::connect(KafkaConfig::new(format!("127.0.0.1:{port}"))).await;
    assert!(matches!(result, Err(BusError::Backend(_))), "connected to nothing?");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn kafka_config_defaults() {
    let config = KafkaConfig::new("k:9092");
    assert_eq!(config.brokers, "k:9092");
    assert_eq!(config.events_topic, "cloudrunr.build-events");
    assert_eq!(config.notices_topic, "cloudrunr.notices");
    assert_eq!(config.consumer_group, "cloudrunr-log-consumer");
    assert_eq!(config.client_id, "cloudrunr");
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!("p50 {:?}, p95 {:?}, max {:?}", at(0.5), at(0.95), at(1.0))
}

/// For the operator docs: `cargo test -p platform kafka_latency -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn kafka_latency() {
    let (_, bus) = kafka!();
    let mut sub = bus.subscribe_durable().await.unwrap();
    let mut watch = bus.watch();
    let id = DeploymentId::generate();
    let (mut publish, mut consume, mut ack, mut watched) = (vec![], vec![], vec![], vec![]);
    for seq in 1..=220u64 {
        let start = Instant::now();
        bus.publish(vec![line(&id, seq)]).await.unwrap();
        let published = start.elapsed();
        let got = collect(&mut *sub, 1).await;
        let consumed = start.elapsed();
        assert_eq!(ident(&got[0]).1, seq);
        let before_ack = Instant::now();
        sub.ack().await.unwrap();
        let acked = before_ack.elapsed();
        loop {
            if let Watched::Event(e) = next_watched(&mut watch).await
                && ident(&e).1 == seq
            {
                break;
            }
        }
        if seq > 20 {
            publish.push(published);
            consume.push(consumed);
            ack.push(acked);
            watched.push(start.elapsed());
        }
    }
    println!("publish (1 event, awaited):    {}", summary(publish));
    println!("publish -> next_batch:         {}", summary(consume));
    println!("ack (sync commit):             {}", summary(ack));
    println!("publish -> watched (after ack): {}", summary(watched));

    let events: Vec<BuildEvent> = (1..=20_000).map(|seq| line(&id, 1000 + seq)).collect();
    let start = Instant::now();
    for chunk in events.chunks(500) {
        bus.publish(chunk.to_vec()).await.unwrap();
    }
    let published = start.elapsed();
    let mut got = 0;
    while got < events.len() {
        got += sub.next_batch(500).await.unwrap().len();
        sub.ack().await.unwrap();
    }
    println!(
        "20000 events in batches of 500: published in {published:?}, consumed and acked in {:?}",
        start.elapsed()
    );
}
