//! `moralsweep models`: the built-in model catalog, as a table or JSON.

use clap::Args;
use moralsweep_common::catalog;

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print the catalog as JSON (every field, sources included).
    #[arg(long)]
    pub json: bool,
    /// Only the models of this provider (openai, anthropic, gemini).
    #[arg(long)]
    pub provider: Option<String>,
}

fn price(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.3}"))
        .unwrap_or_else(|| "-".to_string())
}

pub fn models(args: ModelsArgs) -> anyhow::Result<()> {
    let c = catalog::builtin()?;
    // An unknown name simply lists nothing, and the error below names the
    // providers the catalog knows.
    let wanted = args
        .provider
        .as_deref()
        .map(|p| p.parse::<moralsweep_common::provider::ProviderKind>().ok());
    let listed: Vec<&catalog::CatalogEntry> = c
        .models
        .iter()
        .filter(|m| wanted.is_none_or(|w| w == Some(m.provider)))
        .collect();
    if let Some(p) = &args.provider {
        if listed.is_empty() {
            let mut providers: Vec<&str> = c.models.iter().map(|m| m.provider.name()).collect();
            providers.dedup();
            anyhow::bail!(
                "the model catalog holds no model of provider {p:?}; it knows {}",
                providers.join(", ")
            );
        }
    }
    if args.json {
        let v = serde_json::json!({
            "version": c.version,
            "checked": c.checked,
            "models": listed,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "model catalog version {} (reviewed {}); prices in US$ per million tokens",
        c.version, c.checked
    );
    println!(
        "{:<10} {:<28} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>5} {:>5}  prices checked",
        "provider",
        "model",
        "input",
        "output",
        "batch in",
        "batch out",
        "samples",
        "logprob",
        "temp",
        "batch",
    );
    for m in listed {
        println!(
            "{:<10} {:<28} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>5} {:>5}  {}",
            m.provider,
            m.id,
            price(m.input_per_mtok),
            price(m.output_per_mtok),
            price(m.batch_input_per_mtok),
            price(m.batch_output_per_mtok),
            m.max_samples,
            m.max_top_logprobs,
            if m.temperature { "yes" } else { "no" },
            if m.batch { "yes" } else { "no" },
            m.prices_checked
                .as_deref()
                .unwrap_or("unpriced: see --json")
        );
    }
    println!("samples: most samples per request (n / candidateCount); logprob: most top logprobs");
    println!("a spec's [[model]] inherits these unless it sets its own (catalog = \"provider/id\" names an entry)");
    Ok(())
}
