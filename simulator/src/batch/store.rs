//! The batches and files a simulator holds, and the counters of batches
//! created per API that `GET /_sim/stats` shows: a test proves that no
//! batch was created twice by `resubmitted` (batches whose model and set of
//! custom ids equal an earlier batch's) staying 0 and `created` matching
//! what it expects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Batch;
use crate::wire::Api;
use moralsweep_common::hash::fnv1a_parts;

/// An uploaded (or written) file of OpenAI's Files API.
#[derive(Debug, Clone)]
pub struct File {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub created_at: DateTime<Utc>,
    pub bytes: Vec<u8>,
}

/// Counters of one API's batches.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ApiCounters {
    /// Batches created.
    pub created: u64,
    /// Their lines: the requests they answer (a batch that failed
    /// validation keeps only its valid lines, and answers none).
    pub lines: u64,
    /// Batches asked to cancel.
    pub cancelled: u64,
    /// Batches whose model and custom ids equal an earlier batch's: the
    /// same work submitted (and billed) twice.
    pub resubmitted: u64,
}

/// One batch as the stats list it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    pub id: String,
    pub api: &'static str,
    pub model: String,
    pub lines: u64,
}

/// The `batches` part of the stats document.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BatchReport {
    /// Per API: `openai`, `anthropic`, `gemini`.
    pub apis: BTreeMap<&'static str, ApiCounters>,
    /// Over all APIs.
    pub created: u64,
    pub lines: u64,
    pub resubmitted: u64,
    /// Every batch created, oldest first.
    pub list: Vec<BatchSummary>,
}

/// The name of an API in the stats.
pub fn api_name(api: Api) -> &'static str {
    match api {
        Api::OpenAi => "openai",
        Api::Anthropic => "anthropic",
        Api::Gemini => "gemini",
    }
}

/// What the store holds.
#[derive(Default)]
pub struct Inner {
    pub batches: HashMap<String, Batch>,
    /// Batch ids in creation order.
    pub order: Vec<String>,
    pub files: BTreeMap<String, File>,
    /// Gemini uploads in progress, by upload id.
    pub uploads: HashMap<String, File>,
    report: BatchReport,
    /// Digests of the batches ever created (kept across stats resets).
    seen: HashMap<u64, String>,
}

/// The batches and files of a simulator.
#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

impl Store {
    /// Runs `f` with the store locked.
    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// The counters for `GET /_sim/stats`.
    pub fn report(&self) -> BatchReport {
        self.with(|i| i.report.clone())
    }

    /// Forgets the counters (not the batches, nor what was submitted).
    pub fn reset_counters(&self) {
        self.with(|i| i.report = BatchReport::default());
    }
}

impl Inner {
    /// Keeps a new batch and counts it.
    pub fn insert(&mut self, batch: Batch) {
        let mut ids: Vec<&str> = batch.lines.iter().map(|l| l.custom_id.as_str()).collect();
        ids.sort_unstable();
        let mut parts: Vec<&[u8]> = vec![batch.model.as_bytes()];
        parts.extend(ids.iter().map(|s| s.as_bytes()));
        let digest = fnv1a_parts(&parts);
        let resubmitted = self.seen.insert(digest, batch.id.clone()).is_some();
        let api = api_name(batch.api);
        let lines = batch.lines.len() as u64;
        let c = self.report.apis.entry(api).or_default();
        c.created += 1;
        c.lines += lines;
        c.resubmitted += resubmitted as u64;
        self.report.created += 1;
        self.report.lines += lines;
        self.report.resubmitted += resubmitted as u64;
        self.report.list.push(BatchSummary {
            id: batch.id.clone(),
            api,
            model: batch.model.clone(),
            lines,
        });
        self.order.push(batch.id.clone());
        self.batches.insert(batch.id.clone(), batch);
    }

    /// Counts a cancel request.
    pub fn cancelled(&mut self, api: Api) {
        self.report.apis.entry(api_name(api)).or_default().cancelled += 1;
    }

    /// The ids of `api`'s batches, newest first.
    pub fn newest_first(&self, api: Api) -> Vec<String> {
        self.order
            .iter()
            .rev()
            .filter(|id| self.batches.get(*id).is_some_and(|b| b.api == api))
            .cloned()
            .collect()
    }
}
