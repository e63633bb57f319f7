//! The local model against llama.cpp (recorded once by
//! `tests/fixtures/record.py`, see there how to rerun): the same token ids
//! for the same texts, next-token log-probabilities within a tolerance, and
//! the same greedy continuation. One model load serves every check.

mod common;

use std::sync::OnceLock;

use moralsweep_local::engine::Template;
use moralsweep_local::{Engine, EngineOptions};
use serde_json::Value;

/// |our log p - llama.cpp's log p| allowed against llama.cpp on the f32 copy
/// of the weights (both compute in f32 from the same values; measured: about
/// 0.006 nats at worst).
const F32_TOLERANCE: f64 = 0.02;

/// The same against llama.cpp on the Q4_K_M file as shipped: llama.cpp then
/// quantises activations to 8 bits inside its matrix products, which on this
/// model moves log-probabilities by up to about 0.3 nats (measured 0.15-0.27);
/// a wrong layer, norm or position encoding moves them by whole nats.
const QUANTISED_TOLERANCE: f64 = 0.5;

fn fixtures() -> Value {
    let text = include_str!("fixtures/gemma3_270m_llamacpp.json");
    serde_json::from_str(text).expect("fixture JSON parses")
}

fn engine() -> Option<&'static Engine> {
    static E: OnceLock<Option<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        let path = common::model_path("llamacpp_fixtures")?;
        Some(
            Engine::load(
                &path,
                EngineOptions {
                    template: Template::Raw,
                    ..Default::default()
                },
            )
            .expect("the model loads"),
        )
    })
    .as_ref()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenisation_matches_llama_cpp() {
    let Some(e) = engine() else { return };
    let f = fixtures();
    for case in f["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            e.tokenizer.encode(text, true),
            ids(&case["ids"]),
            "tokens of {text:?}"
        );
        assert_eq!(
            e.tokenizer.decode(&ids(&case["ids"])[1..]),
            text,
            "round trip of {text:?}"
        );
    }
    for (d, want) in f["digit_token_ids"].as_object().unwrap() {
        let d: usize = d.parse().unwrap();
        assert_eq!(
            e.digit_tokens(d),
            ids(want).as_slice(),
            "tokens of digit {d}"
        );
    }
}

#[test]
fn chat_template_matches_llama_cpp_special_tokenisation() {
    let Some(e) = engine() else { return };
    let path = common::model_path("chat_template").unwrap();
    let chat = Engine::load(&path, EngineOptions::default()).unwrap();
    let f = fixtures();
    let p = f["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "chat_persona_item")
        .unwrap();
    let text = p["text"].as_str().unwrap();
    let user = text
        .strip_prefix("<start_of_turn>user\n")
        .and_then(|s| s.strip_suffix("<end_of_turn>\n<start_of_turn>model\n"))
        .unwrap();
    assert_eq!(chat.prompt_tokens(user).unwrap(), ids(&p["ids"]));
    let _ = e;
}

fn compare(e: &Engine, prompts: &Value, tolerance: f64, check_greedy: bool) {
    for p in prompts.as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let tokens = ids(&p["ids"]);
        let d = e.distribution(&tokens).unwrap();
        let mut worst = 0f64;
        for pair in p["top"].as_array().unwrap() {
            let (id, want) = (pair[0].as_u64().unwrap() as u32, pair[1].as_f64().unwrap());
            let got = d.logprob(id);
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= tolerance,
                "{name}: log p({:?}) = {got:.4}, llama.cpp {want:.4}",
                e.tokenizer.token_text(id)
            );
        }
        let digits = e.digit_logprobs(&d);
        for (k, want) in p["digit_logprobs"].as_object().unwrap() {
            let (got, want) = (digits[k.parse::<usize>().unwrap()], want.as_f64().unwrap());
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= tolerance,
                "{name}: digit {k}: {got} vs {want}"
            );
        }
        let total: f64 = digits.iter().map(|l| l.exp()).sum();
        assert!(
            total <= 1.0 + 1e-9,
            "{name}: digit probabilities sum to {total}"
        );
        eprintln!("{name}: worst |delta log p| = {worst:.4} (tolerance {tolerance})");
        if check_greedy {
            let want = ids(&p["greedy"]);
            let got = e
                .generate_from(&tokens, want.len(), 0.0, 0, |_| false)
                .unwrap();
            // llama.cpp's list ends with the stop token where it stopped; ours omits it.
            assert_eq!(
                got.tokens,
                want[..got.tokens.len()],
                "{name}: greedy continuation"
            );
            assert!(got.tokens.len() == want.len() || got.tokens.len() + 1 == want.len());
            let top1 = p["top"][0][0].as_u64().unwrap() as u32;
            assert_eq!(d.top(1)[0].0, top1, "{name}: most likely next token");
        }
    }
}

#[test]
fn next_token_logprobs_and_greedy_match_llama_cpp_f32() {
    let Some(e) = engine() else { return };
    compare(e, &fixtures()["prompts_f32"], F32_TOLERANCE, true);
}

#[test]
fn next_token_logprobs_match_llama_cpp_quantised() {
    let Some(e) = engine() else { return };
    compare(e, &fixtures()["prompts"], QUANTISED_TOLERANCE, false);
}

/// The tiny random-weight models of each architecture, against llama.cpp on
/// the same files (`fixtures/make_arch_fixtures.py` writes both): the same
/// token ids for the same texts (plain, and a prompt through the model's
/// chat format), next-token log-probabilities within [`F32_TOLERANCE`] (both
/// compute in f32 from the same f32 weights; ours rounds them to half
/// precision when packing), and the greedy continuation wherever llama.cpp's
/// two best tokens are clearly apart. These need no downloaded model.
mod architectures {
    use super::*;

    fn dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch")
    }

    fn check(name: &str) {
        let path = dir().join(format!("{name}.gguf"));
        let f: Value = serde_json::from_str(
            &std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let e = Engine::load(
            &path,
            EngineOptions {
                template: Template::Raw,
                ..Default::default()
            },
        )
        .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(e.model.cfg.arch.name(), f["architecture"].as_str().unwrap());
        for case in f["tokenize"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want = ids(&case["ids"]);
            assert_eq!(
                e.tokenizer.encode(text, true),
                want,
                "{name}: tokens of {text:?}"
            );
            let body = match want.first() {
                Some(&b) if Some(b) == e.tokenizer.bos && e.tokenizer.add_bos => &want[1..],
                _ => &want[..],
            };
            let decoded = e.tokenizer.decode(body);
            let decoded = match decoded.strip_prefix(' ') {
                Some(rest) if e.tokenizer.adds_space_prefix() => rest,
                _ => &decoded,
            };
            assert_eq!(decoded, text, "{name}: round trip of {text:?}");
        }
        for (d, want) in f["digit_token_ids"].as_object().unwrap() {
            let d: usize = d.parse().unwrap();
            assert_eq!(
                e.digit_tokens(d),
                ids(want).as_slice(),
                "{name}: tokens of digit {d}"
            );
        }
        for p in f["prompts"].as_array().unwrap() {
            let pname = format!("{name}/{}", p["name"].as_str().unwrap());
            let tokens = ids(&p["ids"]);
            if p["chat"].as_bool() == Some(true) {
                let user = p["user"].as_str().unwrap();
                assert_eq!(
                    e.frame(user, &Template::Chat).unwrap(),
                    tokens,
                    "{pname}: the chat-framed prompt"
                );
                let has = |s: &str| e.tokenizer.token_id(s).is_some();
                let rendered = e.chat_format().unwrap().render(user, has);
                assert_eq!(rendered, p["text"].as_str().unwrap(), "{pname}: rendered");
            } else {
                let text = p["text"].as_str().unwrap();
                assert_eq!(e.frame(text, &Template::Raw).unwrap(), tokens, "{pname}");
            }
        }
        compare(&e, &f["prompts"], F32_TOLERANCE, false);
        for p in f["prompts"].as_array().unwrap() {
            let pname = format!("{name}/{}", p["name"].as_str().unwrap());
            let want = ids(&p["greedy"]);
            let margins: Vec<f64> = p["greedy_margins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_f64().unwrap())
                .collect();
            // Compare up to the first step whose two best tokens are within
            // the tolerance of each other (either could come first).
            let sure = margins
                .iter()
                .take_while(|&&m| m > 2.0 * F32_TOLERANCE)
                .count();
            let got = e
                .generate_from(&ids(&p["ids"]), want.len(), 0.0, 0, |_| false)
                .unwrap();
            let n = sure.min(got.tokens.len());
            assert_eq!(got.tokens[..n], want[..n], "{pname}: greedy continuation");
            eprintln!("{pname}: greedy agrees on {n} of {} tokens", want.len());
        }
    }

    #[test]
    fn llama3_matches_llama_cpp() {
        check("llama3");
    }

    #[test]
    fn mistral_matches_llama_cpp() {
        check("mistral");
    }

    #[test]
    fn qwen2_matches_llama_cpp() {
        check("qwen2");
    }

    #[test]
    fn qwen3_matches_llama_cpp() {
        check("qwen3");
    }

    #[test]
    fn gemma2_matches_llama_cpp() {
        check("gemma2");
    }

    /// A minimal GGUF file with the given string metadata and no tensors.
    fn gguf_with(kv: &[(&str, &str)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((kv.len() as u64).to_le_bytes());
        for (k, v) in kv {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
            b.extend(8u32.to_le_bytes());
            b.extend((v.len() as u64).to_le_bytes());
            b.extend(v.as_bytes());
        }
        b
    }

    #[test]
    fn an_unsupported_architecture_is_named_with_the_supported_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("phi.gguf");
        std::fs::write(
            &p,
            gguf_with(&[
                ("general.architecture", "phi3"),
                ("tokenizer.ggml.model", "gpt2"),
            ]),
        )
        .unwrap();
        let err = Engine::load(&p, EngineOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("phi.gguf")
                && err.contains("\"phi3\"")
                && err.contains("gemma3, gemma2, llama, qwen2, qwen3"),
            "{err}"
        );
    }

    #[test]
    fn a_base_model_without_chat_format_says_so_when_asked_for_chat() {
        // Raw and completion framing work; chat names the reason.
        let e = Engine::load(&dir().join("qwen3.gguf"), EngineOptions::default()).unwrap();
        assert!(e.frame("hi", &Template::Raw).is_ok());
        let mut bytes = std::fs::read(dir().join("qwen3.gguf")).unwrap();
        // The same model with its chat template renamed away: an unknown key.
        let at = bytes
            .windows(23)
            .position(|w| w == b"tokenizer.chat_template")
            .unwrap();
        bytes[at..at + 9].copy_from_slice(b"tokenizeX");
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("base.gguf");
        std::fs::write(&p, bytes).unwrap();
        let base = Engine::load(&p, EngineOptions::default()).unwrap();
        assert!(!base.has_chat_template);
        let err = base.frame("hi", &Template::Chat).unwrap_err().to_string();
        assert!(
            err.contains("base.gguf") && err.contains("qwen3") && err.contains("completion"),
            "{err}"
        );
        assert!(base.frame("hi", &Template::Raw).is_ok());
    }
}
