use std::fmt;

/// A configuration problem, with the key and the file or variable it came from.
#[derive(Debug, Clone)]
pub struct ConfigError {
    messages: Vec<String>,
}

impl ConfigError {
    /// A single message; include the key and the source.
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            messages: vec![message.into()],
        }
    }

    /// Every problem found, one per entry.
    pub fn messages(&self) -> &[String] {
        &self.messages
    }
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        // figment's Display already says "for key `x` in <file>"; each error in the chain is one
        // problem.
        Self {
            messages: error.into_iter().map(|e| e.to_string()).collect(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.messages.as_slice() {
            [one] => write!(f, "configuration error: {one}"),
            many => {
                write!(f, "{} configuration errors:", many.len())?;
                for m in many {
                    write!(f, "\n  - {m}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}
