//! Azure OpenAI's batch: OpenAI's Files and Batches APIs under the
//! resource's routes (`/openai/files?api-version=...`,
//! `/openai/batches?api-version=...`, or the v1 API's `/openai/v1/files`
//! and `/openai/v1/batches`), with the model's Azure credential. The lines
//! name `/chat/completions` and carry the body's `model`: the name of a
//! Global-Batch (or Data Zone Batch) deployment, the spec's `model`. The
//! client is OpenAI's ([`OpenAiBatch`]) on this [`Host`].

use async_trait::async_trait;

use crate::providers::azure::AzureOpenAi;
use crate::providers::batch::openai::{Host, OpenAiBatch};
use crate::providers::openai::OpenAi;
use crate::providers::ProviderError;

#[async_trait]
impl Host for AzureOpenAi {
    fn model(&self) -> &OpenAi {
        self.openai()
    }

    fn url(&self, op: &str, query: &[(&str, &str)]) -> String {
        self.route().url(op, query)
    }

    fn endpoint(&self) -> String {
        "/chat/completions".into()
    }

    fn api(&self) -> &'static str {
        "azure-openai"
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        self.send(reqwest::Method::GET, url, None).await
    }

    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ProviderError> {
        self.send(reqwest::Method::POST, url, Some((content_type, body)))
            .await
    }
}

/// The batch client of an Azure OpenAI deployment.
pub fn client(model: AzureOpenAi) -> OpenAiBatch<AzureOpenAi> {
    OpenAiBatch::on(model)
}
