//! The answers kept for the next identical request, and where they are kept.

use crate::lru::lock;
use axum::http::StatusCode;
use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The answers last given, by what they answered, for as long as the routing table they were
/// computed from is current (keyed on [`Sites::generation`](crate::Sites::generation): a promotion, rollback or any other
/// table change makes every older answer a miss). A cached answer is exactly the bytes
/// [`Sites::answer`](crate::Sites::answer) gave, less the `Date`. Bounded by entries and bytes; when full it starts
/// over.
#[derive(Default)]
pub(super) struct Answers {
    map: Mutex<AnswerMap>,
}

#[derive(Default)]
struct AnswerMap {
    entries: HashMap<Box<[u8]>, Arc<Answer>>,
    bytes: usize,
}

pub(super) struct Answer {
    generation: u64,
    /// Status line and headers, without `Date` and the blank line.
    pub(super) head: Bytes,
    pub(super) body: AnswerBody,
}

/// A cached answer's body: bytes to copy into the socket, or — when long enough that the copy is
/// what costs — an unnamed file the kernel sends from its page cache itself (`sendfile`), as a
/// static file server does. (A `memfd` would do without a directory, but `sendfile` from shmem
/// measured twice as slow as from a disk file's page cache.)
pub(super) enum AnswerBody {
    Memory(Bytes),
    File(AnswerFile),
}

/// A body in a file. Each holds a file descriptor: [`ANSWER_FILES`] at most exist at once.
pub(super) struct AnswerFile {
    pub(super) file: std::fs::File,
    pub(super) len: usize,
}

/// Answer bodies held in files at most, so that the cache never uses up the process's
/// descriptors (a longer body beyond that is kept in memory and copied).
const ANSWER_FILES: usize = 128;
static LIVE_ANSWER_FILES: AtomicUsize = AtomicUsize::new(0);

impl Drop for AnswerFile {
    fn drop(&mut self) {
        LIVE_ANSWER_FILES.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AnswerBody {
    /// Keeps `data` as a body, in a file in `dir` when it is long and a file can be made there.
    fn of(data: Bytes, dir: &Path) -> Self {
        if data.len() < SENDFILE_MIN {
            return Self::Memory(data);
        }
        if LIVE_ANSWER_FILES.fetch_add(1, Ordering::Relaxed) >= ANSWER_FILES {
            LIVE_ANSWER_FILES.fetch_sub(1, Ordering::Relaxed);
            return Self::Memory(data);
        }
        match answer_file(dir, &data) {
            Ok(file) => Self::File(AnswerFile { file, len: data.len() }),
            Err(e) => {
                LIVE_ANSWER_FILES.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!("cannot keep an answer in a file in {}: {e}", dir.display());
                Self::Memory(data)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Memory(bytes) => bytes.len(),
            Self::File(f) => f.len,
        }
    }
}

/// An unnamed file in `dir` holding `data` (`O_TMPFILE`: it has no name to leave behind).
fn answer_file(dir: &Path, data: &[u8]) -> io::Result<std::fs::File> {
    use std::io::Write;
    let mut file = tempfile::tempfile_in(dir)?;
    file.write_all(data)?;
    Ok(file)
}

/// Cached answers at most.
const ANSWERS: usize = 4096;
/// Bytes of cached answers at most (bodies are mostly shared with the store's cache).
const ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Bodies longer than this are not cached as answers.
pub(super) const ANSWER_BODY: usize = 1024 * 1024;
/// Cached bodies from this long are sent with `sendfile` rather than copied.
const SENDFILE_MIN: usize = 32 * 1024;

/// Where an answer is to be kept, if it turns out cacheable: the cache, the request's key, and
/// the generation read before answering.
pub(super) struct Keep<'a> {
    pub(super) answers: &'a Answers,
    pub(super) key: &'a [u8],
    pub(super) generation: u64,
    /// Where long bodies go (see [`AnswerBody`]).
    pub(super) dir: &'a Path,
}

impl Keep<'_> {
    pub(super) fn store(&self, head: &[u8], body: Bytes) {
        let answer = Answer {
            generation: self.generation,
            head: Bytes::copy_from_slice(head),
            body: AnswerBody::of(body, self.dir),
        };
        self.answers.put(self.key, answer);
    }
}

impl Answers {
    pub(super) fn get(&self, key: &[u8], generation: u64) -> Option<Arc<Answer>> {
        let map = lock(&self.map);
        map.entries.get(key).filter(|a| a.generation == generation).cloned()
    }

    pub(super) fn put(&self, key: &[u8], answer: Answer) {
        let size = key.len() + answer.head.len() + answer.body.len();
        let mut map = lock(&self.map);
        if map.entries.len() >= ANSWERS || map.bytes + size > ANSWER_BYTES {
            map.entries.clear();
            map.bytes = 0;
        }
        map.bytes += size;
        if let Some(old) = map.entries.insert(key.into(), Arc::new(answer)) {
            map.bytes -= key.len() + old.head.len() + old.body.len();
        }
    }
}

/// Statuses whose answers are cached: the same for everyone asking the same thing (not 304, which
/// answers a condition, nor 206/416, nor the 5xx of a failure that may pass).
pub(super) const CACHEABLE: [StatusCode; 8] = [
    StatusCode::OK,
    StatusCode::MOVED_PERMANENTLY,
    StatusCode::FOUND,
    StatusCode::SEE_OTHER,
    StatusCode::TEMPORARY_REDIRECT,
    StatusCode::PERMANENT_REDIRECT,
    StatusCode::NOT_FOUND,
    StatusCode::GONE,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(generation: u64, body: &'static [u8]) -> Answer {
        Answer {
            generation,
            head: Bytes::from_static(b"HTTP/1.1 200 OK\r\n"),
            body: AnswerBody::Memory(Bytes::from_static(body)),
        }
    }

    #[test]
    fn answers_hold_for_their_generation_only() {
        let answers = Answers::default();
        answers.put(b"k", answer(3, b"old"));
        assert!(answers.get(b"k", 3).is_some());
        assert!(
            answers.get(b"k", 4).is_none(),
            "a newer table never sees an older answer"
        );
        assert!(answers.get(b"other", 3).is_none());
        answers.put(b"k", answer(4, b"new"));
        let got = answers.get(b"k", 4).expect("replaced");
        assert!(matches!(&got.body, AnswerBody::Memory(b) if b == "new"));
        let map = answers.map.lock().unwrap();
        assert_eq!(map.entries.len(), 1);
        assert_eq!(
            map.bytes,
            1 + answer(0, b"new").head.len() + 3,
            "the replaced entry's bytes are returned"
        );
    }

    #[test]
    fn answers_start_over_when_full() {
        let answers = Answers::default();
        for i in 0..ANSWERS {
            answers.put(format!("{i}").as_bytes(), answer(1, b"x"));
        }
        assert!(answers.get(b"0", 1).is_some());
        answers.put(b"one more", answer(1, b"x"));
        assert!(answers.get(b"0", 1).is_none());
        assert!(answers.get(b"one more", 1).is_some());
        assert_eq!(answers.map.lock().unwrap().entries.len(), 1);
    }

    #[test]
    fn long_bodies_go_to_files_short_ones_stay_in_memory() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            AnswerBody::of(Bytes::from_static(b"short"), dir.path()),
            AnswerBody::Memory(_)
        ));
        let long: Bytes = (0..SENDFILE_MIN + 7)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let body = AnswerBody::of(long.clone(), dir.path());
        assert_eq!(body.len(), long.len());
        let AnswerBody::File(f) = &body else {
            panic!("a long body is kept in a file");
        };
        let mut back = vec![0; long.len()];
        f.file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, long);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the file has no name"
        );
    }
}
