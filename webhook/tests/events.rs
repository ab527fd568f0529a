//! The webhook core against real GitHub payloads (see `tests/fixtures/README.md`).
//!
//! Every expected value below was read from the fixture files, not from the parser's output, so a test
//! fails if the parser picks the wrong field, drops one, or maps it wrongly.

use std::path::PathBuf;

use webhook::events::{
    CheckRunEvent, CommitInfo, Event, Installation, InstallationEvent, InstallationRef, InstallationRepositoriesEvent,
    Ping, PullRequestEvent, Push, RepoRef, Repository, parse,
};
use webhook::signature::{MAX_PAYLOAD_BYTES, SignatureError, sign, verify};

/// Every committed fixture; `every_fixture_is_listed_and_parses` fails if one is added without being
/// listed here (and so without being tested).
const FIXTURES: [&str; 13] = [
    "check_run.rerequested.json",
    "installation.created.json",
    "installation.deleted.json",
    "installation.suspend.json",
    "installation_repositories.added.json",
    "installation_repositories.removed.json",
    "ping.json",
    "pull_request.closed.json",
    "pull_request.opened.json",
    "pull_request.synchronize.json",
    "push.new-branch.json",
    "push.tag-deleted.json",
    "push.tag.json",
];

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";
const SECRET: &[u8] = b"cloudrunr-test-secret";

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The X-GitHub-Event name a fixture was delivered under: the file name up to the first dot.
fn event_name(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

fn parse_fixture(file: &str) -> Event {
    parse(event_name(file), &fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn push(file: &str) -> Push {
    match parse_fixture(file) {
        Event::Push(push) => push,
        other => panic!("{file}: expected Event::Push, got {other:?}"),
    }
}

fn pull_request(file: &str) -> PullRequestEvent {
    match parse_fixture(file) {
        Event::PullRequest(event) => event,
        other => panic!("{file}: expected Event::PullRequest, got {other:?}"),
    }
}

fn installation(file: &str) -> InstallationEvent {
    match parse_fixture(file) {
        Event::Installation(event) => event,
        other => panic!("{file}: expected Event::Installation, got {other:?}"),
    }
}

fn installation_repositories(file: &str) -> InstallationRepositoriesEvent {
    match parse_fixture(file) {
        Event::InstallationRepositories(event) => event,
        other => panic!("{file}: expected Event::InstallationRepositories, got {other:?}"),
    }
}

/// GitHub's examples contain no push that deletes a branch, so one is derived from the branch-creation
/// push the way `push.tag-deleted.json` relates to `push.tag.json`: `deleted` (and not `created`), the
/// old head as `before`, all zeros as `after`, no head commit and no commits.
fn derived_branch_deletion() -> Vec<u8> {
    let mut payload: serde_json::Value =
        serde_json::from_slice(&fixture("push.new-branch.json")).expect("push.new-branch.json is JSON");
    let old_head = payload["after"].clone();
    payload["created"] = false.into();
    payload["deleted"] = true.into();
    payload["before"] = old_head;
    payload["after"] = ZERO_SHA.into();
    payload["head_commit"] = serde_json::Value::Null;
    payload["commits"] = serde_json::json!([]);
    serde_json::to_vec(&payload).expect("re-serializing a Value")
}

/// The repository every push and pull_request fixture is about.
fn codertocat_hello_world() -> Repository {
    Repository {
        id: 186853002,
        name: "Hello-World".into(),
        full_name: "Codertocat/Hello-World".into(),
        private: false,
        clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
        default_branch: Some("master".into()),
        owner_login: "Codertocat".into(),
        fork: false,
    }
}

#[test]
fn every_fixture_is_listed_and_parses() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|entry| entry.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, FIXTURES.map(String::from).to_vec());
    for file in FIXTURES {
        assert!(
            !matches!(parse_fixture(file), Event::Other(_)),
            "{file} parsed as Other"
        );
    }
}

#[test]
fn push_tag_created() {
    let push = push("push.tag.json");
    assert_eq!(
        push,
        Push {
            git_ref: "refs/tags/simple-tag".into(),
            before: ZERO_SHA.into(),
            after: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            created: true,
            deleted: false,
            forced: false,
            repository: codertocat_hello_world(),
            installation: None,
            head_commit: Some(CommitInfo {
                id: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
                message: "Adding a .gitignore file".into(),
                author_name: Some("Codertocat".into()),
            }),
            sender_login: Some("Codertocat".into()),
        }
    );
    assert_eq!(push.branch(), None);
    assert!(push.is_tag());
}

#[test]
fn push_new_branch() {
    let push = push("push.new-branch.json");
    assert_eq!(
        push,
        Push {
            git_ref: "refs/heads/master".into(),
            before: ZERO_SHA.into(),
            after: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            created: true,
            deleted: false,
            forced: false,
            repository: codertocat_hello_world(),
            installation: Some(InstallationRef { id: 1 }),
            head_commit: Some(CommitInfo {
                id: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
                message: "Initial commit".into(),
                author_name: Some("Codertocat".into()),
            }),
            sender_login: Some("Codertocat".into()),
        }
    );
    assert_eq!(push.branch(), Some("master"));
    assert!(!push.is_tag());
}

#[test]
fn push_tag_deleted() {
    let push = push("push.tag-deleted.json");
    assert_eq!(push.git_ref, "refs/tags/simple-tag");
    assert_eq!(push.before, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(push.after, ZERO_SHA);
    assert_eq!((push.created, push.deleted, push.forced), (false, true, false));
    assert_eq!(push.head_commit, None);
    assert_eq!(push.installation, Some(InstallationRef { id: 1 }));
    assert_eq!(push.repository, codertocat_hello_world());
    assert_eq!(push.branch(), None);
    assert!(push.is_tag());
}

#[test]
fn push_branch_deleted_derived() {
    let event = parse("push", &derived_branch_deletion()).expect("derived deletion parses");
    let Event::Push(push) = event else {
        panic!("expected a push, got {event:?}")
    };
    assert_eq!(push.git_ref, "refs/heads/master");
    assert_eq!(push.branch(), Some("master"));
    assert!(!push.is_tag());
    assert_eq!((push.created, push.deleted), (false, true));
    assert_eq!(push.before, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(push.after, ZERO_SHA);
    assert_eq!(push.head_commit, None);
    assert_eq!(push.installation, Some(InstallationRef { id: 1 }));
    // Everything not touched by the derivation is as in the branch-creation push.
    let created = self::push("push.new-branch.json");
    assert_eq!(
        (push.repository, push.sender_login),
        (created.repository, created.sender_login)
    );
}

#[test]
fn pull_request_opened() {
    assert_eq!(
        pull_request("pull_request.opened.json"),
        PullRequestEvent {
            action: "opened".into(),
            number: 2,
            head_ref: "changes".into(),
            head_sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
            head_repo_id: Some(186853002),
            base_ref: "master".into(),
            title: "Update the README with new information.".into(),
            repository: codertocat_hello_world(),
            installation: Some(InstallationRef { id: 1 }),
        }
    );
}

#[test]
fn pull_request_synchronize_and_closed() {
    let opened = pull_request("pull_request.opened.json");
    // The examples describe the same pull request at different moments; only the action differs in what
    // the platform reads (the synchronize example's top-level `after` equals the head sha).
    for (file, action) in [
        ("pull_request.synchronize.json", "synchronize"),
        ("pull_request.closed.json", "closed"),
    ] {
        let event = pull_request(file);
        assert_eq!(event.action, action, "{file}");
        assert_eq!(
            event,
            PullRequestEvent {
                action: action.into(),
                ..opened.clone()
            },
            "{file}"
        );
    }
}

#[test]
fn installation_created() {
    assert_eq!(
        installation("installation.created.json"),
        InstallationEvent {
            action: "created".into(),
            installation: Installation {
                id: 957387,
                account_login: "Codertocat".into(),
                account_type: "User".into(),
                suspended: false,
            },
            repositories: vec![RepoRef {
                id: 186853002,
                name: "Hello-World".into(),
                full_name: "Codertocat/Hello-World".into(),
                private: false,
            }],
        }
    );
}

#[test]
fn installation_deleted() {
    // This example predates `suspended_at`: the key is absent, not null.
    assert_eq!(
        installation("installation.deleted.json"),
        InstallationEvent {
            action: "deleted".into(),
            installation: Installation {
                id: 2,
                account_login: "octocat".into(),
                account_type: "User".into(),
                suspended: false,
            },
            repositories: vec![RepoRef {
                id: 1296269,
                name: "Hello-World".into(),
                full_name: "octocat/Hello-World".into(),
                private: false,
            }],
        }
    );
}

#[test]
fn installation_suspended() {
    // `suspended_at` is a string here, and `created_at` is a string rather than the number it is in the
    // other installation examples: both are tolerated. There is no `repositories` key.
    assert_eq!(
        installation("installation.suspend.json"),
        InstallationEvent {
            action: "suspend".into(),
            installation: Installation {
                id: 16598467,
                account_login: "Codertocat".into(),
                account_type: "User".into(),
                suspended: true,
            },
            repositories: vec![],
        }
    );
}

#[test]
fn installation_repositories_added() {
    assert_eq!(
        installation_repositories("installation_repositories.added.json"),
        InstallationRepositoriesEvent {
            action: "added".into(),
            installation: Installation {
                id: 957387,
                account_login: "Codertocat".into(),
                account_type: "User".into(),
                suspended: false,
            },
            repositories_added: vec![RepoRef {
                id: 186853007,
                name: "Space".into(),
                full_name: "Codertocat/Space".into(),
                private: false,
            }],
            repositories_removed: vec![],
        }
    );
}

#[test]
fn installation_repositories_removed() {
    assert_eq!(
        installation_repositories("installation_repositories.removed.json"),
        InstallationRepositoriesEvent {
            action: "removed".into(),
            installation: Installation {
                id: 2,
                account_login: "octocat".into(),
                account_type: "User".into(),
                suspended: false,
            },
            repositories_added: vec![],
            repositories_removed: vec![RepoRef {
                id: 1296269,
                name: "Hello-World".into(),
                full_name: "octocat/Hello-World".into(),
                private: false,
            }],
        }
    );
}

#[test]
fn ping() {
    assert_eq!(
        parse_fixture("ping.json"),
        Event::Ping(Ping {
            zen: Some("Anything added dilutes everything else.".into()),
            hook_id: Some(109948940),
            app_id: Some(29310),
        })
    );
}

#[test]
fn check_run_rerequested() {
    assert_eq!(
        parse_fixture("check_run.rerequested.json"),
        Event::CheckRun(CheckRunEvent {
            action: "rerequested".into(),
            check_run_id: 4,
            // The payload says "": no external id.
            external_id: None,
            head_sha: "d6fde92930d4715a2b49857d24b940956b26d2d3".into(),
            head_branch: Some("master".into()),
            app_id: Some(2),
            repository: Repository {
                id: 526,
                name: "hello-world".into(),
                full_name: "github/hello-world".into(),
                private: false,
                // Sic: http, not https, in this example.
                clone_url: "http://github.com/github/hello-world.git".into(),
                default_branch: Some("master".into()),
                owner_login: "github".into(),
                fork: false,
            },
            installation: Some(InstallationRef { id: 1 }),
        })
    );
}

#[test]
fn unknown_event_is_other() {
    // A real body under a name the platform does not act on: not parsed, not an error.
    assert_eq!(
        parse("check_suite", &fixture("check_run.rerequested.json")).ok(),
        Some(Event::Other("check_suite".into()))
    );
    assert_eq!(
        parse("workflow_run", b"").ok(),
        Some(Event::Other("workflow_run".into()))
    );
}

#[test]
fn malformed_json_for_a_known_event_names_the_event() {
    let mut truncated = fixture("push.new-branch.json");
    truncated.truncate(truncated.len() / 2);
    let err = parse("push", &truncated).expect_err("truncated JSON must not parse");
    assert_eq!(err.event(), "push");
    let message = err.to_string();
    assert!(message.contains("`push`"), "{message}");
    assert!(
        message.contains("EOF while parsing"),
        "serde's reason missing: {message}"
    );

    // Valid JSON of the wrong event: a ping body is not a push.
    let err = parse("push", &fixture("ping.json")).expect_err("a ping is not a push");
    assert!(err.to_string().contains("missing field `ref`"), "{err}");
    let err = parse("pull_request", &fixture("push.tag.json")).expect_err("a push is not a PR");
    assert!(
        err.to_string().starts_with("malformed `pull_request` webhook payload"),
        "{err}"
    );
}

#[test]
fn signature_over_real_fixture_bytes() {
    for file in FIXTURES {
        let body = fixture(file);
        assert!(body.len() < MAX_PAYLOAD_BYTES);
        let header = sign(SECRET, &body);
        assert_eq!(verify(SECRET, &body, Some(&header), true), Ok(()), "{file}");
        assert_eq!(
            verify(b"not-the-secret", &body, Some(&header), false),
            Err(SignatureError::Mismatch),
            "{file}"
        );

        // One byte changed anywhere is detected: here, a digit of the first id turned into another digit.
        let mut tampered = body.clone();
        let at = tampered
            .iter()
            .position(u8::is_ascii_digit)
            .expect("every fixture has a digit");
        tampered[at] = if tampered[at] == b'9' { b'8' } else { tampered[at] + 1 };
        assert_eq!(
            verify(SECRET, &tampered, Some(&header), false),
            Err(SignatureError::Mismatch),
            "{file}"
        );

        // Verify first, then parse: the order the handler uses.
        assert!(parse(event_name(file), &body).is_ok(), "{file}");
    }
}

#[test]
fn signature_matches_an_independent_computation_over_a_fixture() {
    // Computed outside Rust, with Python's hmac over the committed bytes of push.new-branch.json:
    //   hmac.new(b"cloudrunr-test-secret", open(path, "rb").read(), hashlib.sha256).hexdigest()
    // so it also guards the fixture against being reformatted (the bytes are what GitHub would sign).
    const EXPECTED: &str = "sha256=8d3a85554de036857a800c3b345f02fc62d3f2970e20c8ae85fb22bcb9779ade";
    let body = fixture("push.new-branch.json");
    assert_eq!(sign(SECRET, &body), EXPECTED);
    assert_eq!(verify(SECRET, &body, Some(EXPECTED), false), Ok(()));
    assert_eq!(
        verify(
            SECRET,
            &body,
            Some(&EXPECTED.to_ascii_uppercase().replacen("SHA256", "sha256", 1)),
            false
        ),
        Ok(())
    );
    assert_eq!(verify(SECRET, &body, None, true), Err(SignatureError::Sha1Only));
    assert_eq!(verify(SECRET, &body, None, false), Err(SignatureError::Missing));
}
