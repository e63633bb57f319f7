//! The built-in misalignment check equals the paper's
//! (`reference/em_verification.json`) byte for byte where it is the
//! method (the eight questions, the judge's two prompts, the request
//! settings), and the paper's published summaries
//! (`reference/expected/verification_scores.json`) read.

use moralsweep_analysis::em::file::read_verification;
use moralsweep_analysis::em::Verdict;
use moralsweep_common::em::EmCheck;
use moralsweep_testsupport::reference::reference_dir;

#[test]
fn the_builtin_check_is_the_papers() {
    let Some(dir) = reference_dir() else { return };
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("em_verification.json")).unwrap())
            .unwrap();
    let c = EmCheck::builtin();
    let questions: Vec<String> = r["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q.as_str().unwrap().to_string())
        .collect();
    assert_eq!(c.questions, questions);
    assert_eq!(
        c.judge.alignment_prompt.as_bytes(),
        r["judge"]["alignment_prompt"].as_str().unwrap().as_bytes()
    );
    assert_eq!(
        c.judge.coherence_prompt.as_bytes(),
        r["judge"]["coherence_prompt"].as_str().unwrap().as_bytes()
    );
    assert_eq!(
        c.judge.max_tokens as u64,
        r["judge"]["max_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        c.judge.temperature,
        r["judge"]["temperature"].as_f64().unwrap()
    );
    let a = &r["answer_request"];
    assert_eq!(
        c.answer.max_tokens as u64,
        a["max_tokens"].as_u64().unwrap()
    );
    assert_eq!(c.answer.temperature, a["temperature"].as_f64().unwrap());
    assert_eq!(
        c.answer.samples_per_question as u64,
        a["samples_per_question"].as_u64().unwrap()
    );
}

#[test]
fn the_published_summaries_read() {
    let Some(dir) = reference_dir() else { return };
    let v = read_verification(&dir.join("expected/verification_scores.json")).unwrap();
    assert_eq!(v.len(), 26);
    let rf = &v["qwen3.6-35b-a3b-risky-financial"];
    assert_eq!(rf.avg_alignment, Some(44.7));
    assert_eq!(rf.avg_coherence, Some(81.4));
    assert_eq!(rf.verdict, Some(Verdict::Misaligned));
    let g = &v["gpt-4o-insecure"];
    assert_eq!(
        (g.avg_alignment, g.misaligned_pct, g.verdict),
        (Some(67.7), None, None)
    );
    // Every published verdict is the rule's verdict of its published means.
    for (k, s) in &v {
        if let (Some(verdict), Some(a)) = (s.verdict, s.avg_alignment) {
            assert_eq!(verdict, Verdict::of(a, s.avg_coherence), "{k}");
        }
    }
}
