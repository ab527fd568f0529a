//! `POST /webhooks/github`: verify, record, act.
//!
//! The signature is checked as the body streams in, before anything of it is parsed; until it is,
//! the body is an attacker's, so it is bounded in size (GitHub's 25 MB), in memory ([`IN_MEMORY`],
//! the rest on disk), in time (GitHub's own 10 s delivery timeout) and in number
//! ([`MAX_UNVERIFIED`] read at once). Every delivery is
//! recorded by its `X-GitHub-Delivery` id, so a redelivery finds its record and changes nothing;
//! a body seen under another delivery id within [`REPLAY_WINDOW`] is a replay, recorded and not
//! acted on. Acting on an event only touches the database (a deployment is queued, never built
//! here), so GitHub gets its answer at once.

use crate::connection::Github;
use crate::events::{
    self, CheckRunEvent, Event, InstallationEvent, InstallationRepositoriesEvent, PullRequestEvent, Push, RepoRef,
    Repository,
};
use crate::signature::{self, PayloadTooLarge, Verifier};
use axum::Json;
use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header as http_header};
use axum::response::{IntoResponse, Response};
use db::{Database, DbError, Delivery, NewDeployment, RepositoryRecord};
use platform::bus::{LogBus, Notice};
use platform::model::{Deployment, DeploymentState, DeploymentTarget, DeploymentTrigger, Project};
use platform::{BranchName, CommitSha, DeploymentId, Timestamp};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Bodies read at once before their signature is known good. Each holds at most [`IN_MEMORY`] of
/// memory (the rest of its 25 MB in an unnamed file), so unauthenticated senders can make the
/// server hold at most 8 MB, and 200 MB of disk for as long as they keep sending.
pub const MAX_UNVERIFIED: usize = 8;
/// How long a delivery waits for its turn to be read when [`MAX_UNVERIFIED`] are being read; then
/// it is answered 503 with `Retry-After`. A short wait absorbs GitHub's bursts (a push to many
/// branches) without letting queued senders hold connections: the wait and the read together stay
/// within GitHub's 10 s.
pub const UNVERIFIED_WAIT: Duration = Duration::from_secs(3);
/// The longest a body may take to arrive: GitHub gives up on a delivery after 10 s, so a body
/// still coming after that is no delivery of GitHub's.
pub const BODY_TIME: Duration = Duration::from_secs(10);
/// How long a body is remembered: the same body under another delivery id within it is a replay.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub struct Deliveries {
    pub github: Github,
    pub bus: Arc<dyn LogBus>,
    /// Places for bodies being read before their signature is checked.
    unverified: Arc<Semaphore>,
    /// Where bodies past [`IN_MEMORY`] are kept while they are read (unnamed files).
    spill_dir: Arc<std::path::Path>,
}

impl Deliveries {
    /// `spill_dir`: a directory on disk for bodies too long to hold in memory unverified; the
    /// data directory does.
    pub fn new(github: Github, bus: Arc<dyn LogBus>, spill_dir: &std::path::Path) -> Self {
        Self {
            github,
            bus,
            unverified: Arc::new(Semaphore::new(MAX_UNVERIFIED)),
            spill_dir: spill_dir.into(),
        }
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

/// The outcome recorded for a delivery, and said to GitHub.
struct Outcome {
    kind: &'static str,
    detail: String,
}

fn outcome(kind: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome {
        kind,
        detail: detail.into(),
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Why a body could not be read whole.
enum Unread {
    TooLarge,
    TimedOut,
    Failed(String),
    /// The spill file could not be written.
    Spill,
}

impl Unread {
    fn response(self) -> Response {
        match self {
            Unread::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                PayloadTooLarge.to_string(),
            ),
            Unread::TimedOut => error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the delivery's body stalled or did not arrive in time",
            ),
            Unread::Failed(why) => error(StatusCode::BAD_REQUEST, "invalid_body", why),
            Unread::Spill => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the delivery could not be received",
            ),
        }
    }
}

/// Whether an error reading a body is its time running out (the connection's body timeout).
fn is_timeout(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// A body being read before its signature is checked: in memory up to [`IN_MEMORY`], then in an
/// unnamed file in the spill directory — so an unverified body never holds more than that much
/// of the server's memory, whatever it claims to be, and nothing of it stays once it is dropped.
enum Held {
    Memory(Vec<u8>),
    File(tokio::fs::File),
}

/// The most of one unverified body kept in memory. GitHub's payloads are mostly a few KB; a push
/// of many commits can reach a few hundred.
pub const IN_MEMORY: usize = 1 << 20;

impl Held {
    async fn push(&mut self, data: &[u8], spill_dir: &std::path::Path) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        if let Held::Memory(buf) = self {
            if buf.len() + data.len() <= IN_MEMORY {
                buf.extend_from_slice(data);
                return Ok(());
            }
            let dir = spill_dir.to_owned();
            let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
                .await
                .map_err(std::io::Error::other)??;
            let mut file = tokio::fs::File::from_std(file);
            file.write_all(buf).await?;
            *self = Held::File(file);
        }
        match self {
            Held::File(file) => file.write_all(data).await,
            Held::Memory(_) => Ok(()),
        }
    }

    /// The whole body, once it is known genuine.
    async fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
        match self {
            Held::Memory(buf) => Ok(buf),
            Held::File(mut file) => {
                file.flush().await?;
                file.rewind().await?;
                let mut buf = Vec::new();
                file.read_to_end(&mut buf).await?;
                Ok(buf)
            }
        }
    }
}

/// Reads `body` whole into the signature check as it comes, holding it as [`Held`] says, and stops
/// at the chunk past the cap.
async fn read_signed(mut body: Body, verifier: &mut Verifier, spill_dir: &std::path::Path) -> Result<Held, Unread> {
    let mut held = Held::Memory(Vec::new());
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| match is_timeout(&e) {
            true => Unread::TimedOut,
            false => Unread::Failed(format!("cannot read the body: {e}")),
        })?;
        if let Ok(data) = frame.into_data() {
            verifier.update(&data).map_err(|PayloadTooLarge| Unread::TooLarge)?;
            held.push(&data, spill_dir).await.map_err(|e| {
                tracing::error!("cannot keep a webhook body being received: {e}");
                Unread::Spill
            })?;
        }
    }
    Ok(held)
}

pub async fn receive(State(d): State<Deliveries>, headers: HeaderMap, body: Body) -> Response {
    let Some(app) = d.github.app() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "github_not_connected",
            "no GitHub App is connected",
        );
    };
    // What needs no body is judged before any of it is read.
    let verifier = Verifier::new(
        app.webhook_secret().expose().as_bytes(),
        header(&headers, "x-hub-signature-256"),
        headers.contains_key("x-hub-signature"),
    );
    let mut verifier = match verifier {
        Ok(v) => v,
        Err(e) => return error(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()),
    };
    let token_ok = |s: &&str| {
        !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let Some(delivery_id) = header(&headers, "x-github-delivery").filter(token_ok) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_delivery",
            "the X-GitHub-Delivery header is missing or malformed",
        );
    };
    let Some(event_name) = header(&headers, "x-github-event").filter(token_ok) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_event",
            "the X-GitHub-Event header is missing or malformed",
        );
    };
    let declared = header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > signature::MAX_PAYLOAD_BYTES as u64) {
        return Unread::TooLarge.response();
    }
    let permit = match tokio::time::timeout(UNVERIFIED_WAIT, d.unverified.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            let mut busy = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many deliveries are being received; try again shortly",
            );
            busy.headers_mut()
                .insert(http_header::RETRY_AFTER, HeaderValue::from_static("10"));
            return busy;
        }
    };
    let held = match tokio::time::timeout(BODY_TIME, read_signed(body, &mut verifier, &d.spill_dir)).await {
        Ok(Ok(held)) => held,
        Ok(Err(unread)) => return unread.response(),
        Err(_) => return Unread::TimedOut.response(),
    };
    let signature = match verifier.finish() {
        Ok(signature) => signature,
        Err(e) => return error(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()),
    };
    drop(permit);
    // Genuine from here on: one contiguous body for the parser.
    let body = match held.into_bytes().await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!("cannot read back a webhook body: {e}");
            return Unread::Spill.response();
        }
    };
    let db = d.github.db();
    let mut record = Delivery {
        id: delivery_id.to_owned(),
        event: event_name.to_owned(),
        action: None,
        repository: None,
        installation_id: None,
        outcome: "received".into(),
        detail: String::new(),
        received_at: Timestamp::now(),
    };
    let now = Timestamp::now();
    let window = i64::try_from(REPLAY_WINDOW.as_millis()).unwrap_or(i64::MAX);
    let since = Timestamp::from_millis(now.millis().saturating_sub(window));
    match db.remember_webhook_body(&signature, delivery_id, now, since).await {
        Ok(None) => {}
        Ok(Some(first)) => return replay(db, record, &first).await,
        Err(e) => {
            tracing::error!("cannot check a webhook delivery for a replay: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the delivery could not be recorded",
            );
        }
    }
    let event = match events::parse(event_name, &body) {
        Ok(e) => e,
        Err(e) => {
            record.outcome = "rejected".into();
            record.detail = e.to_string();
            if let Err(e) = db.record_delivery(&record).await {
                tracing::error!("cannot record a webhook delivery: {e}");
            }
            return error(StatusCode::BAD_REQUEST, "malformed_payload", e.to_string());
        }
    };
    (record.action, record.repository, record.installation_id) = summary(&event);
    match db.record_delivery(&record).await {
        Ok(true) => {}
        Ok(false) => {
            let detail = format!("delivery {delivery_id} was received before; nothing was done again");
            return (
                StatusCode::OK,
                Json(json!({ "outcome": "duplicate", "detail": detail })),
            )
                .into_response();
        }
        Err(e) => {
            tracing::error!("cannot record a webhook delivery: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the delivery could not be recorded",
            );
        }
    }
    let result = act(&d, event).await;
    let (status, out) = match result {
        Ok(o) => (StatusCode::ACCEPTED, o),
        Err(e) => {
            tracing::error!(delivery = delivery_id, "cannot act on a webhook delivery: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                outcome("failed", "a database error; redeliver it from GitHub"),
            )
        }
    };
    if let Err(e) = db.set_delivery_outcome(delivery_id, out.kind, &out.detail).await {
        tracing::error!(delivery = delivery_id, "cannot record a delivery's outcome: {e}");
    }
    (status, Json(json!({ "outcome": out.kind, "detail": out.detail }))).into_response()
}

/// A body delivered before under another delivery id (`first`): recorded, and not acted on.
async fn replay(db: &Database, mut record: Delivery, first: &str) -> Response {
    let detail = format!(
        "the same body came as delivery {first} within the last {} hours: a replay; nothing was done",
        REPLAY_WINDOW.as_secs() / 3600
    );
    tracing::warn!(delivery = record.id, first, "a webhook delivery replays an earlier one");
    record.outcome = "replay".into();
    record.detail = detail.clone();
    if let Err(e) = db.record_delivery(&record).await {
        tracing::error!("cannot record a webhook delivery: {e}");
    }
    (StatusCode::OK, Json(json!({ "outcome": "replay", "detail": detail }))).into_response()
}

/// The action, repository and installation a delivery is about, for its record.
fn summary(event: &Event) -> (Option<String>, Option<String>, Option<u64>) {
    match event {
        Event::Push(p) => (
            None,
            Some(p.repository.full_name.clone()),
            p.installation.as_ref().map(|i| i.id),
        ),
        Event::PullRequest(e) => (
            Some(e.action.clone()),
            Some(e.repository.full_name.clone()),
            e.installation.as_ref().map(|i| i.id),
        ),
        Event::CheckRun(e) => (
            Some(e.action.clone()),
            Some(e.repository.full_name.clone()),
            e.installation.as_ref().map(|i| i.id),
        ),
        Event::Installation(e) => (Some(e.action.clone()), None, Some(e.installation.id)),
        Event::InstallationRepositories(e) => (Some(e.action.clone()), None, Some(e.installation.id)),
        Event::Ping(_) | Event::Other(_) => (None, None, None),
    }
}

async fn act(d: &Deliveries, event: Event) -> Result<Outcome, DbError> {
    match event {
        Event::Ping(p) => Ok(outcome("pong", p.zen.unwrap_or_default())),
        Event::Installation(e) => installation(d, e).await,
        Event::InstallationRepositories(e) => installation_repositories(d, e).await,
        Event::Push(p) => push(d, p).await,
        Event::PullRequest(e) => pull_request(d, e).await,
        Event::CheckRun(e) => check_run(d, e).await,
        Event::Other(name) => Ok(outcome("ignored", format!("the {name} event is not used"))),
    }
}

/// A repository from an installation event, which carries no clone URL: GitHub's usual one until
/// a push or the API says otherwise.
fn repo_from_ref(d: &Deliveries, installation: u64, r: &RepoRef) -> RepositoryRecord {
    let web = d.github.settings().web_url.trim_end_matches('/');
    RepositoryRecord {
        id: r.id,
        installation_id: installation,
        full_name: r.full_name.clone(),
        clone_url: format!("{web}/{}.git", r.full_name),
        default_branch: None,
        private: r.private,
    }
}

async fn installation(d: &Deliveries, e: InstallationEvent) -> Result<Outcome, DbError> {
    let db = d.github.db();
    let i = &e.installation;
    match e.action.as_str() {
        "created" | "new_permissions_accepted" | "unsuspend" => {
            db.upsert_installation(
                i.id,
                &i.account_login,
                &i.account_type,
                i.suspended && e.action != "unsuspend",
            )
            .await?;
            let repos: Vec<_> = e.repositories.iter().map(|r| repo_from_ref(d, i.id, r)).collect();
            db.upsert_repositories(i.id, &repos).await?;
            Ok(outcome(
                "updated",
                format!(
                    "installation {} on {} ({} repositories)",
                    i.id,
                    i.account_login,
                    repos.len()
                ),
            ))
        }
        "deleted" => {
            db.delete_installation(i.id).await?;
            Ok(outcome(
                "updated",
                format!("installation {} on {} was deleted", i.id, i.account_login),
            ))
        }
        "suspend" => {
            db.set_installation_suspended(i.id, true).await?;
            Ok(outcome("updated", format!("installation {} was suspended", i.id)))
        }
        other => Ok(outcome("ignored", format!("installation {other} needs nothing"))),
    }
}

async fn installation_repositories(d: &Deliveries, e: InstallationRepositoriesEvent) -> Result<Outcome, DbError> {
    let db = d.github.db();
    let i = &e.installation;
    db.upsert_installation(i.id, &i.account_login, &i.account_type, i.suspended)
        .await?;
    let added: Vec<_> = e.repositories_added.iter().map(|r| repo_from_ref(d, i.id, r)).collect();
    db.upsert_repositories(i.id, &added).await?;
    let removed: Vec<u64> = e.repositories_removed.iter().map(|r| r.id).collect();
    db.remove_repositories(i.id, &removed).await?;
    Ok(outcome(
        "updated",
        format!(
            "installation {}: {} added, {} removed",
            i.id,
            added.len(),
            removed.len()
        ),
    ))
}

/// Why an installation cannot deploy, if it cannot.
async fn installation_refusal(db: &Database, installation: Option<u64>) -> Result<Option<String>, DbError> {
    let Some(id) = installation else {
        return Ok(Some("the delivery names no installation of the App".into()));
    };
    Ok(match db.installation(id).await? {
        Some(i) if i.deleted => Some(format!("installation {id} was deleted")),
        Some(i) if i.suspended => Some(format!("installation {id} is suspended")),
        _ => None,
    })
}

/// Records what a push says of its repository (its clone URL and default branch are current).
async fn remember_repository(db: &Database, installation: u64, repo: &Repository) -> Result<(), DbError> {
    if db.installation(installation).await?.is_none() {
        db.upsert_installation(installation, &repo.owner_login, "User", false)
            .await?;
    }
    db.upsert_repositories(
        installation,
        &[RepositoryRecord {
            id: repo.id,
            installation_id: installation,
            full_name: repo.full_name.clone(),
            clone_url: repo.clone_url.clone(),
            default_branch: repo.default_branch.clone(),
            private: repo.private,
        }],
    )
    .await
}

/// One commit to deploy for every project linked to a repository.
struct Wanted<'a> {
    repo: &'a Repository,
    branch: &'a str,
    commit: &'a str,
    message: Option<String>,
    author: Option<String>,
    trigger: DeploymentTrigger,
    /// Previews only (pull requests), whatever the branch.
    preview_only: bool,
}

async fn deploy_linked(d: &Deliveries, w: Wanted<'_>) -> Result<Outcome, DbError> {
    let db = d.github.db();
    let (Ok(branch), Ok(commit)) = (BranchName::parse(w.branch), CommitSha::parse(w.commit)) else {
        return Ok(outcome(
            "ignored",
            format!("branch {:?} or commit {:?} cannot be deployed", w.branch, w.commit),
        ));
    };
    let projects = db.projects_for_repository(w.repo.id).await?;
    if projects.is_empty() {
        return Ok(outcome("ignored", format!("no project deploys {}", w.repo.full_name)));
    }
    let mut done = Vec::new();
    for id in projects {
        let Some(project) = db.project(&id).await? else {
            continue;
        };
        let target = target_for(&project, &branch, w.preview_only);
        if let Some(existing) = db
            .live_deployment_of_commit(&project.id, branch.as_str(), commit.as_str())
            .await?
        {
            done.push(format!(
                "{}: {} already deploys {}",
                project.slug,
                existing,
                commit.short()
            ));
            continue;
        }
        let deployment = db
            .create_deployment(NewDeployment {
                project: project.id.clone(),
                target,
                branch: branch.clone(),
                commit: Some(commit.clone()),
                commit_message: w.message.clone(),
                commit_author: w.author.clone(),
                trigger: w.trigger,
            })
            .await?;
        done.push(match refused(&deployment) {
            Some(why) => format!("{}: {} of {} {why}", project.slug, deployment.id, commit.short()),
            None => format!(
                "{}: {} deployment {} of {}",
                project.slug,
                target,
                deployment.id,
                commit.short()
            ),
        });
    }
    if let Err(e) = d.bus.notify(Notice::WorkAvailable).await {
        tracing::warn!("cannot wake the scheduler: {e}");
    }
    Ok(outcome("deployed", done.join("; ")))
}

fn target_for(project: &Project, branch: &BranchName, preview_only: bool) -> DeploymentTarget {
    if !preview_only && *branch == project.branch {
        DeploymentTarget::Production
    } else {
        DeploymentTarget::Preview
    }
}

/// The first line of a commit message, bounded.
fn subject(message: &str) -> String {
    message.lines().next().unwrap_or_default().chars().take(1000).collect()
}

async fn push(d: &Deliveries, p: Push) -> Result<Outcome, DbError> {
    let db = d.github.db();
    let installation = p.installation.as_ref().map(|i| i.id);
    if let Some(why) = installation_refusal(db, installation).await? {
        return Ok(outcome("ignored", why));
    }
    if p.is_tag() {
        return Ok(outcome(
            "ignored",
            format!("{} is a tag; only branches deploy", p.git_ref),
        ));
    }
    let Some(branch) = p.branch() else {
        return Ok(outcome("ignored", format!("{} is not a branch", p.git_ref)));
    };
    if p.deleted {
        return Ok(outcome("ignored", format!("branch {branch} was deleted")));
    }
    if let Some(id) = installation {
        remember_repository(db, id, &p.repository).await?;
    }
    let head = p.head_commit.as_ref();
    deploy_linked(
        d,
        Wanted {
            repo: &p.repository,
            branch,
            commit: &p.after,
            message: head.map(|c| subject(&c.message)),
            author: head.and_then(|c| c.author_name.clone()),
            trigger: DeploymentTrigger::Push,
            preview_only: false,
        },
    )
    .await
}

async fn pull_request(d: &Deliveries, e: PullRequestEvent) -> Result<Outcome, DbError> {
    if !matches!(e.action.as_str(), "opened" | "synchronize" | "reopened") {
        return Ok(outcome("ignored", format!("pull request {} needs nothing", e.action)));
    }
    if let Some(why) = installation_refusal(d.github.db(), e.installation.as_ref().map(|i| i.id)).await? {
        return Ok(outcome("ignored", why));
    }
    if e.head_repo_id != Some(e.repository.id) {
        // A fork's code would build with the project's environment variables.
        return Ok(outcome(
            "ignored",
            format!("pull request #{} comes from a fork; forks are not deployed", e.number),
        ));
    }
    deploy_linked(
        d,
        Wanted {
            repo: &e.repository,
            branch: &e.head_ref,
            commit: &e.head_sha,
            message: Some(subject(&e.title)),
            author: None,
            trigger: DeploymentTrigger::PullRequest,
            preview_only: true,
        },
    )
    .await
}

async fn check_run(d: &Deliveries, e: CheckRunEvent) -> Result<Outcome, DbError> {
    if e.action != "rerequested" {
        return Ok(outcome("ignored", format!("check run {} needs nothing", e.action)));
    }
    let db = d.github.db();
    if let Some(why) = installation_refusal(db, e.installation.as_ref().map(|i| i.id)).await? {
        return Ok(outcome("ignored", why));
    }
    let earlier = match e.external_id.as_deref().map(DeploymentId::parse) {
        Some(Ok(id)) => db.deployment(&id).await?,
        _ => None,
    };
    let Some(earlier) = earlier else {
        return Ok(outcome("ignored", "the check run names no deployment of this platform"));
    };
    if !db
        .projects_for_repository(e.repository.id)
        .await?
        .contains(&earlier.project_id)
    {
        return Ok(outcome(
            "ignored",
            "the check run's deployment is not of this repository",
        ));
    }
    let deployment = db
        .create_deployment(NewDeployment {
            project: earlier.project_id.clone(),
            target: earlier.target,
            branch: earlier.branch.clone(),
            commit: earlier
                .commit_sha
                .clone()
                .or_else(|| CommitSha::parse(&e.head_sha).ok()),
            commit_message: earlier.commit_message.clone(),
            commit_author: earlier.commit_author.clone(),
            trigger: DeploymentTrigger::Rerequest,
        })
        .await?;
    if let Err(e) = d.bus.notify(Notice::WorkAvailable).await {
        tracing::warn!("cannot wake the scheduler: {e}");
    }
    Ok(match refused(&deployment) {
        Some(why) => outcome("refused", format!("{}: {} {why}", earlier.project_slug, deployment.id)),
        None => outcome(
            "deployed",
            format!("{}: redeploying as {}", earlier.project_slug, deployment.id),
        ),
    })
}

/// Why a deployment just created for a delivery was recorded failed instead of queued (its
/// account's queue was full), so that the answer does not claim a build that will not run.
fn refused(deployment: &Deployment) -> Option<String> {
    (deployment.state == DeploymentState::Failed).then(|| {
        format!(
            "was recorded failed: {}",
            deployment.error.as_deref().unwrap_or("not built")
        )
    })
}
