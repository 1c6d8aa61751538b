//! A build's outcome or error as the worker's result (`crate::result`), with every provided
//! secret's value taken out of the text.

use std::time::Duration;

use super::{Error, Outcome, Request};
use crate::result::{
    BUILD_API_VERSION, CacheStats, Failure, Flag, PushStats, Redactor, Steps, Success,
};
use crate::solve::{BuildError, SecretSource, StepError};

impl Outcome {
    /// The success result of this outcome.
    pub fn to_result(&self, duration: Duration) -> Success {
        let pushed: Vec<String> = self
            .push
            .iter()
            .flat_map(|p| &p.pushed)
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        let name = pushed
            .first()
            .cloned()
            .or_else(|| self.tags.first().cloned());
        Success {
            ok: Flag,
            api_version: BUILD_API_VERSION.into(),
            digest: self.manifest_digest.clone(),
            image: name.map(|n| format!("{n}@{}", self.manifest_digest)),
            pushed,
            pushed_omitted: 0,
            revision: self.revision.clone(),
            steps: Steps {
                total: self.steps,
                cached: self.cached,
            },
            cache: CacheStats {
                hits: self.cached,
                misses: self.steps - self.cached.min(self.steps),
                imported: self.imported,
                exported: self.exported,
            },
            push: self.push.as_ref().map(|p| PushStats {
                uploaded: p.uploaded,
                uploaded_bytes: p.uploaded_bytes,
                mounted: p.mounted,
                existing: p.existing,
            }),
            duration_seconds: (duration.as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }
}

impl Error {
    /// The failure result of this error: its reason, and where in the Dockerfile it happened.
    pub fn to_result(&self) -> Failure {
        let mut f = Failure::new(self.reason(), self.to_string());
        match self {
            Error::Plan(diags) | Error::Build(BuildError::Frontend(diags)) => {
                if let Some(d) = diags.errors().next() {
                    f.message = d.message.clone();
                    f.file = Some(d.file.clone());
                    f.line = (d.line > 0).then_some(d.line);
                    f.column = (d.column > 0).then_some(d.column);
                }
            }
            Error::Dockerfile { path, .. } => f.file = Some(path.display().to_string()),
            Error::MissingRequired(missing) => {
                if let Some(m) = missing.first() {
                    f.file = Some(m.file.clone());
                    f.line = Some(m.line);
                }
            }
            Error::Step { source: e, .. } | Error::Build(e) => {
                if let BuildError::Step(step) = e {
                    let StepError {
                        file,
                        line,
                        instruction,
                        failure,
                        tail,
                        ..
                    } = &**step;
                    f.message = failure.to_string();
                    f.file = Some(file.clone());
                    f.line = Some(*line);
                    f.step = Some(instruction.clone());
                    f.exit_code = failure.exit_code();
                    f.log_tail = (!tail.is_empty()).then(|| tail.join("\n"));
                }
            }
            _ => {}
        }
        f
    }
}

impl Request {
    /// A redactor for every secret this build was given: the values are read again (a file
    /// that cannot be read has nothing to hide).
    pub fn secret_redactor(&self) -> Redactor {
        let values: Vec<Vec<u8>> = self
            .secrets
            .values()
            .filter_map(|s| match s {
                SecretSource::File(p) => std::fs::read(p).ok(),
                SecretSource::Env(var) => std::env::var_os(var).map(|v| v.into_encoded_bytes()),
            })
            // The Git credentials (`--git-auth-dir`), and the headers made of them.
            .chain(self.git_auth().values())
            .collect();
        Redactor::new(values)
    }
}
