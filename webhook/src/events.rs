//! Typed GitHub webhook events, reduced to what the platform acts on.
//!
//! GitHub's payloads are large, nested, and drift over time (fields are added, timestamps are numbers in
//! one event and strings in another). The platform needs a handful of values from a handful of events, so
//! [`parse`] deserializes private structs that mirror GitHub's nesting but name only those values (serde
//! skips everything else), then flattens them into the small public types below. Consequences:
//! - new or retyped fields GitHub adds elsewhere in a payload cannot break parsing;
//! - a field GitHub may omit or send as `null` is an `Option` (or an empty `Vec`), never a guess;
//! - a field the platform relies on that is missing or mistyped is an [`EventError`], never a default.
//!
//! Call [`parse`] only on a body whose signature [`crate::signature::verify`] has accepted.

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// A webhook delivery, by its `X-GitHub-Event` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `ping`: sent once when a webhook (or the App's webhook) is created.
    Ping(Ping),
    /// `push`: commits pushed to, or a branch or tag created or deleted in, a repository.
    Push(Push),
    /// `pull_request`: any pull request activity; [`PullRequestEvent::action`] says which.
    PullRequest(PullRequestEvent),
    /// `installation`: the App was installed, uninstalled, suspended, …
    Installation(InstallationEvent),
    /// `installation_repositories`: repositories were added to or removed from an installation.
    InstallationRepositories(InstallationRepositoriesEvent),
    /// `check_run`: activity on a check run, e.g. a user asking for one to be re-run.
    CheckRun(CheckRunEvent),
    /// An event the platform does not act on (its X-GitHub-Event name).
    Other(String),
}

/// Why a delivery of a known event could not be turned into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The body is not JSON, or lacks (or mistypes) a field the platform relies on.
    ///
    /// serde's message is part of the text (rather than only a `source`) because it is what tells an
    /// operator which field was wrong, and handlers tend to log only the top-level message.
    #[error("malformed `{event}` webhook payload: {reason}")]
    Malformed {
        /// The `X-GitHub-Event` name whose payload shape was expected.
        event: &'static str,
        /// serde_json's description, with line and column.
        reason: serde_json::Error,
    },
}

impl EventError {
    /// The `X-GitHub-Event` name whose payload failed to parse.
    pub fn event(&self) -> &'static str {
        match self {
            EventError::Malformed { event, .. } => event,
        }
    }
}

/// `event` is the X-GitHub-Event header.
///
/// Event names are matched exactly (GitHub sends them in lowercase). For an event the platform does not
/// act on, the body is not looked at at all and the result is [`Event::Other`]: an unknown event can
/// therefore never fail, which lets the handler acknowledge it. For a known event, the whole body must be
/// valid JSON containing the fields the platform needs. Hostile nesting cannot exhaust the stack (serde_json
/// skips unread values without recursing and caps recursion elsewhere), and duplicate keys for a field we
/// read are rejected rather than resolved (parsers that keep the first and the last would disagree).
pub fn parse(event: &str, body: &[u8]) -> Result<Event, EventError> {
    Ok(match event {
        "ping" => Event::Ping(decode::<RawPing>("ping", body)?.into()),
        "push" => Event::Push(decode::<RawPush>("push", body)?.into()),
        "pull_request" => Event::PullRequest(decode::<RawPullRequestEvent>("pull_request", body)?.into()),
        "installation" => Event::Installation(decode::<RawInstallationEvent>("installation", body)?.into()),
        "installation_repositories" => Event::InstallationRepositories(
            decode::<RawInstallationRepositoriesEvent>("installation_repositories", body)?.into(),
        ),
        "check_run" => Event::CheckRun(decode::<RawCheckRunEvent>("check_run", body)?.into()),
        other => Event::Other(other.to_owned()),
    })
}

fn decode<T: DeserializeOwned>(event: &'static str, body: &[u8]) -> Result<T, EventError> {
    serde_json::from_slice(body).map_err(|reason| EventError::Malformed { event, reason })
}

/// A repository as the platform sees it in `push`, `pull_request` and `check_run` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// GitHub's numeric id: stable across renames and transfers, unlike the name.
    pub id: u64,
    pub name: String,
    /// `owner/name`.
    pub full_name: String,
    pub private: bool,
    /// The HTTPS clone URL.
    pub clone_url: String,
    /// Absent from some older or trimmed payloads.
    pub default_branch: Option<String>,
    /// `owner.login`: present for users and organizations alike (push payloads also carry `owner.name`,
    /// which is not always the login, so it is not used).
    pub owner_login: String,
    pub fork: bool,
}

/// Which App installation a delivery is for; absent on plain repository webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRef {
    pub id: u64,
}

/// The commit a push left its ref at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The full commit sha.
    pub id: String,
    pub message: String,
    /// The git author name, when GitHub sends one.
    pub author_name: Option<String>,
}

/// A `push` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The full ref, e.g. `refs/heads/main` or `refs/tags/v1`.
    pub git_ref: String,
    /// The sha the ref pointed at before; all zeros when the ref was created.
    pub before: String,
    /// The sha the ref points at now; all zeros when the ref was deleted.
    pub after: String,
    pub created: bool,
    pub deleted: bool,
    pub forced: bool,
    pub repository: Repository,
    pub installation: Option<InstallationRef>,
    /// `null` when the ref was deleted.
    pub head_commit: Option<CommitInfo>,
    pub sender_login: Option<String>,
}

const BRANCH_PREFIX: &str = "refs/heads/";
const TAG_PREFIX: &str = "refs/tags/";

impl Push {
    /// The branch name for a push to `refs/heads/<branch>` (which may itself contain `/`), `None` for tags
    /// and any other ref. An empty name (`refs/heads/`) is not a branch git would create, so it is `None`
    /// rather than an empty string a caller might treat as real.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix(BRANCH_PREFIX).filter(|name| !name.is_empty())
    }

    /// Whether the push is to a tag (`refs/tags/…`), which the platform does not deploy from.
    pub fn is_tag(&self) -> bool {
        self.git_ref.starts_with(TAG_PREFIX)
    }
}

/// A `pull_request` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    /// `opened`, `synchronize`, `closed`, …
    pub action: String,
    pub number: u64,
    /// The branch name (not a full ref) in the head repository.
    pub head_ref: String,
    pub head_sha: String,
    /// The repository the head branch lives in; differs from `repository.id` for pull requests from
    /// forks, and is `None` when that fork has since been deleted.
    pub head_repo_id: Option<u64>,
    /// The branch name (not a full ref) the pull request targets.
    pub base_ref: String,
    pub title: String,
    /// The base repository: the one the App is installed on.
    pub repository: Repository,
    pub installation: Option<InstallationRef>,
}

/// An `installation` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationEvent {
    /// `created`, `deleted`, `suspend`, `unsuspend`, `new_permissions_accepted`, …
    pub action: String,
    pub installation: Installation,
    /// The repositories the installation covers, when GitHub lists them (it does not when the installation
    /// covers all of the account's repositories, nor for most actions): empty if absent.
    pub repositories: Vec<RepoRef>,
}

/// The App installation an `installation` or `installation_repositories` event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub id: u64,
    /// The user or organization the App is installed on.
    pub account_login: String,
    /// `User` or `Organization`.
    pub account_type: String,
    /// Whether `suspended_at` is set (non-null); its value's type varies between payloads, so only its
    /// presence is read.
    pub suspended: bool,
}

/// A repository as listed in installation events: just its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub id: u64,
    pub name: String,
    pub full_name: String,
    pub private: bool,
}

/// An `installation_repositories` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRepositoriesEvent {
    /// `added` or `removed`.
    pub action: String,
    pub installation: Installation,
    pub repositories_added: Vec<RepoRef>,
    pub repositories_removed: Vec<RepoRef>,
}

/// A `check_run` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRunEvent {
    /// `created`, `completed`, `rerequested`, `requested_action`.
    pub action: String,
    pub check_run_id: u64,
    /// The id the creating App attached to the check run. GitHub sends `""` for "none", which is mapped
    /// to `None` so that an empty string is never mistaken for one of our ids.
    pub external_id: Option<String>,
    pub head_sha: String,
    /// `check_run.check_suite.head_branch`: `None` when the suite is absent or not on a branch.
    pub head_branch: Option<String>,
    /// `check_run.app.id`: the App that owns the check run, so we can ignore other Apps' runs.
    pub app_id: Option<u64>,
    pub repository: Repository,
    pub installation: Option<InstallationRef>,
}

/// A `ping` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub zen: Option<String>,
    pub hook_id: Option<u64>,
    /// `hook.app_id`: set when the hook belongs to a GitHub App.
    pub app_id: Option<u64>,
}

// ---------------------------------------------------------------------------------------------------------
// Private mirrors of GitHub's nesting. Each names only the fields read; serde ignores the rest. `Option`
// fields are `None` when the key is absent or null.

#[derive(Deserialize)]
struct RawLogin {
    login: String,
}

#[derive(Deserialize)]
struct RawId {
    id: u64,
}

#[derive(Deserialize)]
struct RawRepository {
    id: u64,
    name: String,
    full_name: String,
    private: bool,
    clone_url: String,
    default_branch: Option<String>,
    owner: RawLogin,
    fork: bool,
}

impl From<RawRepository> for Repository {
    fn from(raw: RawRepository) -> Self {
        Repository {
            id: raw.id,
            name: raw.name,
            full_name: raw.full_name,
            private: raw.private,
            clone_url: raw.clone_url,
            default_branch: raw.default_branch,
            owner_login: raw.owner.login,
            fork: raw.fork,
        }
    }
}

fn installation_ref(raw: Option<RawId>) -> Option<InstallationRef> {
    raw.map(|RawId { id }| InstallationRef { id })
}

#[derive(Deserialize)]
struct RawPing {
    zen: Option<String>,
    hook_id: Option<u64>,
    hook: Option<RawHook>,
}

#[derive(Deserialize)]
struct RawHook {
    app_id: Option<u64>,
}

impl From<RawPing> for Ping {
    fn from(raw: RawPing) -> Self {
        Ping {
            zen: raw.zen,
            hook_id: raw.hook_id,
            app_id: raw.hook.and_then(|hook| hook.app_id),
        }
    }
}

#[derive(Deserialize)]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    created: bool,
    deleted: bool,
    forced: bool,
    repository: RawRepository,
    installation: Option<RawId>,
    head_commit: Option<RawCommit>,
    sender: Option<RawLogin>,
}

#[derive(Deserialize)]
struct RawCommit {
    id: String,
    message: String,
    author: Option<RawAuthor>,
}

#[derive(Deserialize)]
struct RawAuthor {
    name: Option<String>,
}

impl From<RawPush> for Push {
    fn from(raw: RawPush) -> Self {
        Push {
            git_ref: raw.git_ref,
            before: raw.before,
            after: raw.after,
            created: raw.created,
            deleted: raw.deleted,
            forced: raw.forced,
            repository: raw.repository.into(),
            installation: installation_ref(raw.installation),
            head_commit: raw.head_commit.map(|commit| CommitInfo {
                id: commit.id,
                message: commit.message,
                author_name: commit.author.and_then(|author| author.name),
            }),
            sender_login: raw.sender.map(|sender| sender.login),
        }
    }
}

#[derive(Deserialize)]
struct RawPullRequestEvent {
    action: String,
    number: u64,
    pull_request: RawPullRequest,
    repository: RawRepository,
    installation: Option<RawId>,
}

#[derive(Deserialize)]
struct RawPullRequest {
    title: String,
    head: RawPullRequestHead,
    base: RawPullRequestBase,
}

#[derive(Deserialize)]
struct RawPullRequestHead {
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    repo: Option<RawId>,
}

#[derive(Deserialize)]
struct RawPullRequestBase {
    #[serde(rename = "ref")]
    git_ref: String,
}

impl From<RawPullRequestEvent> for PullRequestEvent {
    fn from(raw: RawPullRequestEvent) -> Self {
        let pr = raw.pull_request;
        PullRequestEvent {
            action: raw.action,
            number: raw.number,
            head_ref: pr.head.git_ref,
            head_sha: pr.head.sha,
            head_repo_id: pr.head.repo.map(|repo| repo.id),
            base_ref: pr.base.git_ref,
            title: pr.title,
            repository: raw.repository.into(),
            installation: installation_ref(raw.installation),
        }
    }
}

#[derive(Deserialize)]
struct RawInstallation {
    id: u64,
    account: RawAccount,
    /// A timestamp string in some payloads; only whether it is non-null matters.
    suspended_at: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RawAccount {
    login: String,
    #[serde(rename = "type")]
    account_type: String,
}

impl From<RawInstallation> for Installation {
    fn from(raw: RawInstallation) -> Self {
        Installation {
            id: raw.id,
            account_login: raw.account.login,
            account_type: raw.account.account_type,
            suspended: raw.suspended_at.is_some(),
        }
    }
}

#[derive(Deserialize)]
struct RawRepoRef {
    id: u64,
    name: String,
    full_name: String,
    private: bool,
}

impl From<RawRepoRef> for RepoRef {
    fn from(raw: RawRepoRef) -> Self {
        RepoRef {
            id: raw.id,
            name: raw.name,
            full_name: raw.full_name,
            private: raw.private,
        }
    }
}

/// An absent or `null` list is an empty one.
fn repo_refs(raw: Option<Vec<RawRepoRef>>) -> Vec<RepoRef> {
    raw.unwrap_or_default().into_iter().map(RepoRef::from).collect()
}

#[derive(Deserialize)]
struct RawInstallationEvent {
    action: String,
    installation: RawInstallation,
    repositories: Option<Vec<RawRepoRef>>,
}

impl From<RawInstallationEvent> for InstallationEvent {
    fn from(raw: RawInstallationEvent) -> Self {
        InstallationEvent {
            action: raw.action,
            installation: raw.installation.into(),
            repositories: repo_refs(raw.repositories),
        }
    }
}

#[derive(Deserialize)]
struct RawInstallationRepositoriesEvent {
    action: String,
    installation: RawInstallation,
    repositories_added: Option<Vec<RawRepoRef>>,
    repositories_removed: Option<Vec<RawRepoRef>>,
}

impl From<RawInstallationRepositoriesEvent> for InstallationRepositoriesEvent {
    fn from(raw: RawInstallationRepositoriesEvent) -> Self {
        InstallationRepositoriesEvent {
            action: raw.action,
            installation: raw.installation.into(),
            repositories_added: repo_refs(raw.repositories_added),
            repositories_removed: repo_refs(raw.repositories_removed),
        }
    }
}

#[derive(Deserialize)]
struct RawCheckRunEvent {
    action: String,
    check_run: RawCheckRun,
    repository: RawRepository,
    installation: Option<RawId>,
}

#[derive(Deserialize)]
struct RawCheckRun {
    id: u64,
    external_id: Option<String>,
    head_sha: String,
    check_suite: Option<RawCheckSuite>,
    app: Option<RawId>,
}

#[derive(Deserialize)]
struct RawCheckSuite {
    head_branch: Option<String>,
}

impl From<RawCheckRunEvent> for CheckRunEvent {
    fn from(raw: RawCheckRunEvent) -> Self {
        let run = raw.check_run;
        CheckRunEvent {
            action: raw.action,
            check_run_id: run.id,
            external_id: run.external_id.filter(|id| !id.is_empty()),
            head_sha: run.head_sha,
            head_branch: run.check_suite.and_then(|suite| suite.head_branch),
            app_id: run.app.map(|app| app.id),
            repository: raw.repository.into(),
            installation: installation_ref(raw.installation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = r#"{"id": 7, "name": "app", "full_name": "acme/app", "private": true,
        "clone_url": "https://github.com/acme/app.git", "owner": {"login": "acme"}, "fork": false}"#;

    fn push_with_ref(git_ref: &str) -> Push {
        let body = format!(
            r#"{{"ref": {git_ref:?}, "before": "a", "after": "b", "created": false, "deleted": false,
                "forced": false, "repository": {REPO}, "head_commit": null}}"#
        );
        match parse("push", body.as_bytes()) {
            Ok(Event::Push(push)) => push,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    #[test]
    fn branch_and_tag_names() {
        let cases: [(&str, Option<&str>, bool); 8] = [
            ("refs/heads/main", Some("main"), false),
            ("refs/heads/feature/login-page", Some("feature/login-page"), false),
            ("refs/heads/refs/tags/x", Some("refs/tags/x"), false),
            ("refs/heads/", None, false),
            ("refs/tags/v1.2.3", None, true),
            ("refs/tags/nested/tag", None, true),
            ("refs/pull/1/head", None, false),
            ("main", None, false),
        ];
        for (git_ref, branch, is_tag) in cases {
            let push = push_with_ref(git_ref);
            assert_eq!(push.branch(), branch, "{git_ref}");
            assert_eq!(push.is_tag(), is_tag, "{git_ref}");
        }
    }

    #[test]
    fn minimal_push_has_nones_for_what_github_may_omit() {
        let push = push_with_ref("refs/heads/main");
        assert_eq!(push.installation, None);
        assert_eq!(push.head_commit, None);
        assert_eq!(push.sender_login, None);
        assert_eq!(push.repository.default_branch, None);
        assert_eq!(push.repository.owner_login, "acme");
        assert!(push.repository.private);
    }

    #[test]
    fn repository_fields_map_one_to_one() {
        // Every value distinct from the others and from the fixtures' (which are all public non-forks).
        let body = br#"{"action": "opened", "number": 1, "installation": {"id": 11},
            "pull_request": {"title": "t", "head": {"ref": "h", "sha": "s", "repo": {"id": 12}}, "base": {"ref": "b"}},
            "repository": {"id": 13, "name": "n", "full_name": "o/n", "private": true, "fork": true,
                "clone_url": "https://example.test/o/n.git", "default_branch": "trunk",
                "owner": {"login": "o", "name": "Owner Name"}}}"#;
        let Ok(Event::PullRequest(pr)) = parse("pull_request", body) else {
            panic!("not a PR")
        };
        assert_eq!(
            pr.repository,
            Repository {
                id: 13,
                name: "n".into(),
                full_name: "o/n".into(),
                private: true,
                clone_url: "https://example.test/o/n.git".into(),
                default_branch: Some("trunk".into()),
                owner_login: "o".into(),
                fork: true,
            }
        );
        assert_eq!(
            (pr.head_repo_id, pr.installation),
            (Some(12), Some(InstallationRef { id: 11 }))
        );
    }

    #[test]
    fn head_commit_without_author_name() {
        let body = format!(
            r#"{{"ref": "refs/heads/main", "before": "a", "after": "b", "created": false, "deleted": false,
                "forced": true, "repository": {REPO}, "sender": {{"login": "bob"}},
                "head_commit": {{"id": "b", "message": "m", "author": {{"email": "x@y"}}}}}}"#
        );
        let Ok(Event::Push(push)) = parse("push", body.as_bytes()) else {
            panic!("not a push")
        };
        assert_eq!(
            push.head_commit,
            Some(CommitInfo {
                id: "b".into(),
                message: "m".into(),
                author_name: None
            })
        );
        assert!(push.forced);
        assert_eq!(push.sender_login.as_deref(), Some("bob"));
    }

    #[test]
    fn pull_request_from_a_deleted_fork_has_no_head_repo() {
        let body = format!(
            r#"{{"action": "closed", "number": 9, "repository": {REPO},
                "pull_request": {{"title": "t", "head": {{"ref": "f", "sha": "s", "repo": null}},
                                  "base": {{"ref": "main"}}}}}}"#
        );
        let Ok(Event::PullRequest(pr)) = parse("pull_request", body.as_bytes()) else {
            panic!("not a PR")
        };
        assert_eq!(pr.head_repo_id, None);
        assert_eq!(pr.installation, None);
        assert_eq!(
            (pr.number, pr.head_ref.as_str(), pr.base_ref.as_str()),
            (9, "f", "main")
        );
    }

    #[test]
    fn installation_suspension_and_repository_lists() {
        let with = |extra: &str| {
            let body = format!(
                r#"{{"action": "created", "installation": {{"id": 3, "account": {{"login": "acme", "type":
                    "Organization"}} {extra} }} }}"#
            );
            match parse("installation", body.as_bytes()) {
                Ok(Event::Installation(event)) => event,
                other => panic!("expected an installation event, got {other:?}"),
            }
        };
        let absent = with("");
        assert!(!absent.installation.suspended);
        assert!(absent.repositories.is_empty());
        assert!(!with(r#", "suspended_at": null"#).installation.suspended);
        assert!(
            with(r#", "suspended_at": "2021-01-01T00:00:00Z""#)
                .installation
                .suspended
        );
        assert!(with(r#", "suspended_at": 1609459200"#).installation.suspended);
        // Timestamps we do not read may have any type.
        assert_eq!(
            with(r#", "created_at": {"odd": [1, "x"]}"#).installation.account_type,
            "Organization"
        );

        let body = br#"{"action": "added", "installation": {"id": 3, "account": {"login": "a", "type": "User"}},
            "repositories_added": null}"#;
        let Ok(Event::InstallationRepositories(event)) = parse("installation_repositories", body) else {
            panic!("not an installation_repositories event")
        };
        assert!(event.repositories_added.is_empty() && event.repositories_removed.is_empty());
    }

    #[test]
    fn check_run_empty_external_id_is_none() {
        let with = |external_id: &str| {
            let body = format!(
                r#"{{"action": "rerequested", "repository": {REPO},
                    "check_run": {{"id": 1, "head_sha": "s", "external_id": {external_id}}}}}"#
            );
            match parse("check_run", body.as_bytes()) {
                Ok(Event::CheckRun(event)) => event,
                other => panic!("expected a check_run event, got {other:?}"),
            }
        };
        assert_eq!(with(r#""""#).external_id, None);
        assert_eq!(with("null").external_id, None);
        assert_eq!(with(r#""deploy-42""#).external_id.as_deref(), Some("deploy-42"));
        let minimal = with("null");
        assert_eq!(
            (minimal.head_branch, minimal.app_id, minimal.installation),
            (None, None, None)
        );
    }

    #[test]
    fn ping_without_hook() {
        assert_eq!(
            parse("ping", b"{}").ok(),
            Some(Event::Ping(Ping {
                zen: None,
                hook_id: None,
                app_id: None
            }))
        );
    }

    #[test]
    fn unknown_events_are_other_without_reading_the_body() {
        for name in ["issues", "check_suite", "Push", "PUSH", "push ", ""] {
            assert_eq!(
                parse(name, b"\xff not json").ok(),
                Some(Event::Other(name.to_owned())),
                "{name:?}"
            );
        }
    }

    #[test]
    fn bad_bodies_for_known_events_are_errors_naming_the_event() {
        let events = [
            "ping",
            "push",
            "pull_request",
            "installation",
            "installation_repositories",
            "check_run",
        ];
        let bodies: [&[u8]; 7] = [b"", b"null", b"[]", b"{", b"\xff\xfe", b"\"push\"", b"{\"zen\": 5}"];
        for event in events {
            for body in bodies {
                let err = match parse(event, body) {
                    Err(err) => err,
                    Ok(parsed) => panic!("{event} {body:?} parsed as {parsed:?}"),
                };
                assert_eq!(err.event(), event);
                assert!(
                    err.to_string()
                        .starts_with(&format!("malformed `{event}` webhook payload: ")),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn error_message_carries_serdes_reason() {
        let body = format!(r#"{{"ref": 5, "repository": {REPO}}}"#);
        let err = parse("push", body.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("invalid type: integer `5`, expected a string"), "{err}");
        let err = parse("push", b"{}").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_rejected_not_resolved() {
        // Two JSON parsers disagreeing about which duplicate wins is a classic way to smuggle a value
        // past a check; serde rejects duplicates of the fields it reads.
        let body = format!(
            r#"{{"ref": "refs/heads/main", "ref": "refs/heads/evil", "before": "a", "after": "b", "created": false,
                "deleted": false, "forced": false, "repository": {REPO}}}"#
        );
        let err = parse("push", body.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("duplicate field `ref`"), "{err}");
    }

    #[test]
    fn hostile_nesting_neither_overflows_the_stack_nor_hides_fields() {
        // serde_json skips ignored values without recursing, so deep junk beside the fields we read is
        // harmless; deep nesting where we expect a value is a type error; unbalanced nesting is a syntax
        // error. None of them may overflow the stack (which would abort the process, not just the request).
        let depth = 100_000;
        let (open, close) = ("[".repeat(depth), "]".repeat(depth));
        let junk = format!(r#"{{"zen": "z", "junk": {open}{close}}}"#);
        assert_eq!(
            parse("ping", junk.as_bytes()).ok(),
            Some(Event::Ping(Ping {
                zen: Some("z".into()),
                hook_id: None,
                app_id: None
            }))
        );
        let in_read_field = format!(r#"{{"hook": {{"app_id": {open}{close}}}}}"#);
        assert!(parse("ping", in_read_field.as_bytes()).is_err());
        let unbalanced = format!(r#"{{"zen": "z", "junk": {open}}}"#);
        assert!(parse("ping", unbalanced.as_bytes()).is_err());
        let objects = format!(r#"{{"junk": {}}}"#, r#"{"a":"#.repeat(depth));
        assert!(parse("ping", objects.as_bytes()).is_err());
    }

    #[test]
    fn numbers_out_of_range_are_errors() {
        for id in ["-1", "18446744073709551616", "1.5", "\"7\""] {
            let body = format!(r#"{{"hook_id": {id}}}"#);
            assert!(parse("ping", body.as_bytes()).is_err(), "hook_id {id}");
        }
        let max = format!(r#"{{"hook_id": {}}}"#, u64::MAX);
        assert_eq!(
            parse("ping", max.as_bytes()).ok(),
            Some(Event::Ping(Ping {
                zen: None,
                hook_id: Some(u64::MAX),
                app_id: None
            }))
        );
    }
}
