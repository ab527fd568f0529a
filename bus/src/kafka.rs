//! The log bus on Apache Kafka, for a platform spread over several processes.
//!
//! - Build events go to the events topic as JSON, keyed by deployment id: one deployment's events
//!   stay in order on one partition. The producer is idempotent with `acks=all`, and `publish`
//!   returns once the cluster has every event, or with an error after 30 seconds.
//! - The durable subscription is a member of the consumer group and commits only on `ack`: an
//!   event returned but never acknowledged (a crash between write and ack) is delivered again.
//! - Watching: one background task per bus, started by the first `watch`, reads both topics by
//!   direct partition assignment (its own group id; no membership, no commits) and feeds one
//!   broadcast, so every process sees every event and notice. Notices go out as they arrive.
//!   Events are held until the consumer group has committed past them, so — as with the
//!   in-process bus — anything a watcher sees is already in the database.
//! - Notices go to the notices topic (one partition).
//!
//! Both topics are created on [`KafkaBus::connect`] if missing, with the brokers' default
//! replication factor. Do not add partitions to a live events topic: a deployment's key would move
//! to another partition mid-build, and running watchers would not read the new partitions.

use async_trait::async_trait;
use futures::FutureExt;
use platform::bus::{BuildEvent, BusError, DurableSubscription, LogBus, Notice, NoticeListener, Watched};
use platform::settings::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long `publish` and `notify` wait for the cluster to take a message before they fail.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `connect` waits for the cluster to create (or confirm) the topics.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Metadata and offset look-ups of the watch task and the commit-position check.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
const EVENTS_PARTITIONS: i32 = 6;
const NOTICES_PARTITIONS: i32 = 1;
/// Attempts of one `ack` before it reports the error (the offsets stay due for the next `ack`).
const COMMIT_ATTEMPTS: u32 = 3;
/// Messages a watch receiver may fall behind before it gets `Lagged`.
const WATCH_CAPACITY: usize = 8 * 1024;
/// The watch task starts this far before the first `watch` call: a message published around that
/// call (or stamped by a broker whose clock is a little behind) is not missed. Watchers tolerate
/// seeing an event or notice twice.
const WATCH_REPLAY: Duration = Duration::from_secs(5);
/// How often the watch task asks how far the consumer group has committed, while it holds events.
/// A commit made through this process's bus wakes it at once.
const COMMIT_POLL: Duration = Duration::from_millis(100);
/// Events the watch task holds back at most (waiting for the consumer group); past this it stops
/// reading events until the group catches up. Notices keep flowing.
const HOLD_LIMIT: usize = 20_000;

/// The client settings every Kafka handle of this bus starts from.
fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id);
    client
}

/// The log bus on Kafka. Dropping it stops its watch task (watch receivers then see `Closed`)
/// and ends its durable subscriptions (`next_batch` then returns `BusError::Closed`).
pub struct KafkaBus {
    config: KafkaConfig,
    producer: OffThread<FutureProducer>,
    watchers: broadcast::Sender<Watched>,
    watching: OnceLock<()>,
    /// Rung by this process's durable subscription after each commit, so that the watch task here
    /// releases the events at once rather than at its next poll.
    committed: Arc<Notify>,
    listeners: Mutex<Vec<Arc<dyn NoticeListener>>>,
    shutdown: CancellationToken,
    runtime: tokio::runtime::Handle,
}

impl KafkaBus {
    /// Connects to the cluster and creates the topics if they are missing (idempotent). Fails if
    /// the cluster cannot be reached within a few seconds.
    pub async fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        config.check().map_err(BusError::Backend)?;
        ensure_topics(&config).await?;
        let producer: FutureProducer = client_config(&config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            // Builders publish a line at a time and wait: lingering would only delay each one.
            .set("linger.ms", "0")
            .set("compression.type", "lz4")
            .create()
            .map_err(|e| backend("cannot create the Kafka producer", e))?;
        let (watchers, _) = broadcast::channel(WATCH_CAPACITY);
        Ok(Self {
            config,
            producer: OffThread::new(producer),
            watchers,
            watching: OnceLock::new(),
            committed: Arc::new(Notify::new()),
            listeners: Mutex::default(),
            shutdown: CancellationToken::new(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Registers a listener that every `notify` of this process awaits before it returns (as
    /// [`InProcessBus::add_listener`](crate::InProcessBus::add_listener)). Notices sent by other
    /// processes reach this one through `watch` only.
    pub fn add_listener(&self, listener: Arc<dyn NoticeListener>) {
        self.listeners.lock().expect("bus lock").push(listener);
    }

    /// Hands one message to the producer, waiting while its queue is full.
    async fn enqueue(&self, topic: &str, key: Option<&str>, payload: &[u8]) -> Result<DeliveryFuture, BusError> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let mut record = FutureRecord::<str, [u8]>::to(topic).payload(payload);
            if let Some(key) = key {
                record = record.key(key);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => return Err(backend("cannot publish to Kafka", e)),
            }
        }
    }
}

impl Drop for KafkaBus {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn delivered(delivery: DeliveryFuture) -> Result<(), BusError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(backend("Kafka did not take the message", e)),
        Err(_) => Err(BusError::Closed),
    }
}

async fn ensure_topics(config: &KafkaConfig) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .map_err(|e| backend("cannot create the Kafka admin client", e))?;
    let admin = OffThread::new(admin);
    // Broker time, not the producer's: the watch task looks messages up by time.
    let topics = [
        NewTopic::new(&config.events_topic, EVENTS_PARTITIONS, TopicReplication::Fixed(-1))
            .set("message.timestamp.type", "LogAppendTime"),
        NewTopic::new(&config.notices_topic, NOTICES_PARTITIONS, TopicReplication::Fixed(-1))
            .set("message.timestamp.type", "LogAppendTime"),
    ];
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| backend(&format!("cannot reach Kafka at {}", config.brokers), e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::Backend(format!(
                    "cannot create the Kafka topic {topic} (at {}): {code}",
                    config.brokers
                )));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl LogBus for KafkaBus {
    async fn publish(&self, events: Vec<BuildEvent>) -> Result<(), BusError> {
        // Everything is queued first (in order: the producer keeps it per partition), then awaited.
        let mut deliveries = Vec::with_capacity(events.len());
        for event in &events {
            let payload = serde_json::to_vec(event).map_err(|e| backend("cannot encode a build event", e))?;
            let key = event.deployment_id.as_str();
            deliveries.push(self.enqueue(&self.config.events_topic, Some(key), &payload).await?);
        }
        for delivery in deliveries {
            delivered(delivery).await?;
        }
        Ok(())
    }

    async fn subscribe_durable(&self) -> Result<Box<dyn DurableSubscription>, BusError> {
        let consumer: StreamConsumer = client_config(&self.config)
            .set("group.id", &self.config.consumer_group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A consumer that dies without leaving the group holds its partitions until the
            // session times out; keep that short so a restarted consumer resumes promptly.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "3000")
            .create()
            .map_err(|e| backend("cannot create the Kafka consumer", e))?;
        consumer
            .subscribe(&[&self.config.events_topic])
            .map_err(|e| backend("cannot subscribe to the events topic", e))?;
        Ok(Box::new(KafkaSubscription {
            consumer: OffThread::new(Arc::new(consumer)),
            topic: self.config.events_topic.clone(),
            uncommitted: BTreeMap::new(),
            shutdown: self.shutdown.clone(),
            committed: self.committed.clone(),
        }))
    }

    fn watch(&self) -> broadcast::Receiver<Watched> {
        let receiver = self.watchers.subscribe();
        self.watching.get_or_init(|| {
            let since = SystemTime::now()
                .checked_sub(WATCH_REPLAY)
                .unwrap_or(UNIX_EPOCH)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let task = WatchTask {
                config: self.config.clone(),
                since_ms: since,
                tx: self.watchers.clone(),
                shutdown: self.shutdown.clone(),
                committed: self.committed.clone(),
            };
            self.runtime.spawn(task.run());
        });
        receiver
    }

    async fn notify(&self, notice: Notice) -> Result<(), BusError> {
        let listeners = self.listeners.lock().expect("bus lock").clone();
        for listener in listeners {
            listener.on_notice(&notice).await;
        }
        let payload = serde_json::to_vec(&notice).map_err(|e| backend("cannot encode a notice", e))?;
        let delivery = self.enqueue(&self.config.notices_topic, None, &payload).await?;
        delivered(delivery).await
    }
}

struct KafkaSubscription {
    consumer: OffThread<Arc<StreamConsumer>>,
    topic: String,
    /// Partition → offset to commit (one past the last message returned), since the last commit.
    uncommitted: BTreeMap<i32, i64>,
    shutdown: CancellationToken,
    committed: Arc<Notify>,
}

impl KafkaSubscription {
    /// Notes a message as returned and decodes it; a malformed one is skipped (and will be
    /// committed past with the rest), never retried: it would block its partition forever.
    fn take(&mut self, message: &BorrowedMessage<'_>) -> Option<BuildEvent> {
        self.uncommitted.insert(message.partition(), message.offset() + 1);
        decode(message, tracing::Level::WARN)
    }
}

#[async_trait]
impl DurableSubscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<BuildEvent>, BusError> {
        let consumer = Arc::clone(&self.consumer);
        let mut batch = Vec::new();
        let mut delay = Duration::from_millis(100);
        while batch.is_empty() {
            let received = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Err(BusError::Closed),
                received = consumer.recv() => received,
            };
            match received {
                Ok(message) => batch.extend(self.take(&message)),
                Err(e) => {
                    // The client reconnects by itself; the consumer must outlive an outage.
                    tracing::warn!("the Kafka log bus consumer got an error (retrying in {delay:?}): {e}");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return Err(BusError::Closed),
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
            // Then whatever is already fetched, without waiting.
            while batch.len() < max {
                match consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.extend(self.take(&message)),
                    Some(Err(e)) => {
                        tracing::warn!("the Kafka log bus consumer got an error: {e}");
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(batch)
    }

    async fn ack(&mut self) -> Result<(), BusError> {
        if self.uncommitted.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next) in &self.uncommitted {
            offsets
                .add_partition_offset(&self.topic, partition, Offset::Offset(next))
                .map_err(|e| backend("cannot list the offsets to commit", e))?;
        }
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let consumer = Arc::clone(&self.consumer);
            let to_commit = offsets.clone();
            let result = tokio::task::spawn_blocking(move || consumer.commit(&to_commit, CommitMode::Sync))
                .await
                .map_err(|e| backend("the commit did not run", e))?;
            match result {
                Ok(()) => {
                    self.uncommitted.clear();
                    self.committed.notify_one();
                    return Ok(());
                }
                Err(KafkaError::ConsumerCommit(code)) if group_moved_on(code) => {
                    // Another member may own these partitions now: it starts from the last commit,
                    // so these events are delivered again, which the consumer tolerates.
                    tracing::warn!(
                        "the log bus consumer group rebalanced before a commit ({code}); recent events will be delivered again"
                    );
                    self.uncommitted.clear();
                    return Ok(());
                }
                Err(e) if attempt < COMMIT_ATTEMPTS => {
                    tracing::warn!("cannot commit the log bus consumer's offsets (retrying in {delay:?}): {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(backend("cannot commit the log bus consumer's offsets", e)),
            }
        }
    }
}

/// A commit refused because the group changed under this member.
fn group_moved_on(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::FencedInstanceId
            | RDKafkaErrorCode::StaleMemberEpoch
            | RDKafkaErrorCode::AssignmentLost
    )
}

/// The JSON payload of a message, or `None` (logged at `level`) if it has none or is not a `T`.
fn decode<T: DeserializeOwned>(message: &BorrowedMessage<'_>, level: tracing::Level) -> Option<T> {
    let error = match message.payload().map(serde_json::from_slice::<T>) {
        Some(Ok(value)) => return Some(value),
        Some(Err(e)) => e.to_string(),
        None => "empty payload".to_owned(),
    };
    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
    if level == tracing::Level::WARN {
        tracing::warn!(
            topic,
            partition,
            offset,
            "skipping a malformed message on the log bus: {error}"
        );
    } else {
        tracing::debug!(
            topic,
            partition,
            offset,
            "skipping a malformed message on the log bus: {error}"
        );
    }
    None
}

/// Feeds the process's watchers from both topics until the bus is dropped.
struct WatchTask {
    config: KafkaConfig,
    since_ms: i64,
    tx: broadcast::Sender<Watched>,
    shutdown: CancellationToken,
    committed: Arc<Notify>,
}

/// The watch task's clients: the two readers, and a member-less client of the consumer group that
/// only looks up its commits.
struct WatchClients {
    events: OffThread<Arc<StreamConsumer>>,
    notices: OffThread<Arc<StreamConsumer>>,
    group: OffThread<Arc<BaseConsumer>>,
    partitions: Vec<i32>,
}

/// Events read but not yet committed by the consumer group, per partition in offset order.
#[derive(Default)]
struct Held {
    events: BTreeMap<i32, VecDeque<(i64, Arc<BuildEvent>)>>,
    len: usize,
    /// Partition → the group's committed offset (everything before it is in the database).
    committed: BTreeMap<i32, i64>,
}

impl Held {
    fn hold(&mut self, partition: i32, offset: i64, event: BuildEvent) {
        self.events
            .entry(partition)
            .or_default()
            .push_back((offset, Arc::new(event)));
        self.len += 1;
    }

    fn release(&mut self, tx: &broadcast::Sender<Watched>) {
        for (partition, queue) in &mut self.events {
            let Some(&committed) = self.committed.get(partition) else {
                continue;
            };
            while let Some((offset, _)) = queue.front()
                && *offset < committed
            {
                let (_, event) = queue.pop_front().expect("front exists");
                self.len -= 1;
                // No receiver is not an error: nobody is watching.
                let _ = tx.send(Watched::Event(event));
            }
        }
    }
}

impl WatchTask {
    async fn run(self) {
        let Some(clients) = self.connect().await else {
            return;
        };
        let mut held = Held::default();
        let mut next_check = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                received = clients.notices.recv() => match received {
                    Ok(message) => {
                        if let Some(notice) = decode::<Notice>(&message, tracing::Level::DEBUG) {
                            let _ = self.tx.send(Watched::Notice(notice));
                        }
                    }
                    Err(e) => self.pause_after(e).await,
                },
                received = clients.events.recv(), if held.len < HOLD_LIMIT => match received {
                    Ok(message) => {
                        if let Some(event) = decode::<BuildEvent>(&message, tracing::Level::DEBUG) {
                            if held.len == 0 {
                                // The consumer group is likely still writing it: ask shortly.
                                next_check = next_check.max(Instant::now() + COMMIT_POLL / 4);
                            }
                            held.hold(message.partition(), message.offset(), event);
                            held.release(&self.tx);
                        }
                    }
                    Err(e) => self.pause_after(e).await,
                },
                () = commit_due(&self.committed, next_check), if held.len > 0 => {
                    match group_commits(&clients, &self.config.events_topic).await {
                        Ok(committed) => held.committed = committed,
                        Err(e) => tracing::warn!("cannot read how far the log consumer got: {e}"),
                    }
                    held.release(&self.tx);
                    next_check = Instant::now() + COMMIT_POLL;
                }
            }
        }
    }

    async fn pause_after(&self, e: KafkaError) {
        tracing::warn!("the Kafka log bus watcher got an error: {e}");
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }

    /// Sets the clients up, retrying (with backoff) until it works or the bus is dropped.
    async fn connect(&self) -> Option<WatchClients> {
        let mut delay = Duration::from_secs(1);
        loop {
            match self.try_connect().await {
                Ok(clients) => return Some(clients),
                Err(e) => tracing::warn!("cannot watch the Kafka log bus yet (retrying in {delay:?}): {e}"),
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    async fn try_connect(&self) -> Result<WatchClients, BusError> {
        let mut suffix = [0u8; 8];
        platform::ids::random_bytes(&mut suffix);
        let mut reader = client_config(&self.config);
        reader
            .set("group.id", format!("cloudrunr-watch-{}", hex::encode(suffix)))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("queued.max.messages.kbytes", "16384");
        let events: StreamConsumer = reader
            .create()
            .map_err(|e| backend("cannot create a Kafka consumer", e))?;
        let notices: StreamConsumer = reader
            .create()
            .map_err(|e| backend("cannot create a Kafka consumer", e))?;
        let group: BaseConsumer = client_config(&self.config)
            .set("group.id", &self.config.consumer_group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| backend("cannot create a Kafka consumer", e))?;
        let clients = WatchClients {
            events: OffThread::new(Arc::new(events)),
            notices: OffThread::new(Arc::new(notices)),
            group: OffThread::new(Arc::new(group)),
            partitions: Vec::new(),
        };
        let (events, notices) = (Arc::clone(&clients.events), Arc::clone(&clients.notices));
        let (events_topic, notices_topic) = (self.config.events_topic.clone(), self.config.notices_topic.clone());
        let since = self.since_ms;
        let partitions = blocking(move || {
            let partitions = start_at(&events, &events_topic, since)?;
            start_at(&notices, &notices_topic, since)?;
            Ok(partitions)
        })
        .await?;
        Ok(WatchClients { partitions, ..clients })
    }
}

/// Waits for this process's next commit, or until `at`.
async fn commit_due(committed: &Notify, at: Instant) {
    tokio::select! {
        () = committed.notified() => {}
        () = tokio::time::sleep_until(at) => {}
    }
}

/// How far the consumer group has committed on each events partition.
async fn group_commits(clients: &WatchClients, topic: &str) -> Result<BTreeMap<i32, i64>, BusError> {
    let mut wanted = TopicPartitionList::new();
    for &partition in &clients.partitions {
        wanted.add_partition(topic, partition);
    }
    let group = Arc::clone(&clients.group);
    let found = blocking(move || {
        group
            .committed_offsets(wanted, LOOKUP_TIMEOUT)
            .map_err(|e| backend("cannot look up the consumer group's commits", e))
    })
    .await?;
    Ok(found
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect())
}

/// Assigns every partition of `topic` to `consumer`, from the first message appended at or after
/// `since_ms` (broker time), and returns the partitions. Blocking.
fn start_at(consumer: &StreamConsumer, topic: &str, since_ms: i64) -> Result<Vec<i32>, BusError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
        .map_err(|e| backend(&format!("cannot read the metadata of {topic}"), e))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| BusError::Backend(format!("no topic {topic}")))?;
    if let Some(e) = found.error() {
        return Err(BusError::Backend(format!(
            "topic {topic}: {}",
            RDKafkaErrorCode::from(e)
        )));
    }
    let partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(BusError::Backend(format!("topic {topic} has no partitions yet")));
    }
    // The ends first: a partition with nothing since `since_ms` starts at its end as it was before
    // the look-up, so a message appended in between is not skipped.
    let mut ends = BTreeMap::new();
    for &partition in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, LOOKUP_TIMEOUT)
            .map_err(|e| backend(&format!("cannot read the end of {topic}/{partition}"), e))?;
        ends.insert(partition, high);
    }
    let mut wanted = TopicPartitionList::new();
    for &partition in &partitions {
        wanted
            .add_partition_offset(topic, partition, Offset::Offset(since_ms))
            .map_err(|e| backend("cannot list partitions", e))?;
    }
    let starts = consumer
        .offsets_for_times(wanted, LOOKUP_TIMEOUT)
        .map_err(|e| backend(&format!("cannot look up offsets by time in {topic}"), e))?;
    let mut assignment = TopicPartitionList::new();
    for element in starts.elements() {
        let partition = element.partition();
        let start = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => ends.get(&partition).copied().unwrap_or(0),
        };
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| backend("cannot list partitions", e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| backend(&format!("cannot read {topic}"), e))?;
    Ok(partitions)
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, BusError> + Send + 'static) -> Result<T, BusError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| backend("a Kafka call did not run", e))?
}

fn backend(what: &str, e: impl Display) -> BusError {
    BusError::Backend(format!("{what}: {e}"))
}

/// A librdkafka client, destroyed on a blocking thread: closing one waits on the network (leaving
/// the group, flushing), which must not stall the async threads.
struct OffThread<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> OffThread<T> {
    fn new(client: T) -> Self {
        Self(Some(client))
    }
}

impl<T: Send + 'static> std::ops::Deref for OffThread<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for OffThread<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn_blocking(move || drop(client));
        }
    }
}
