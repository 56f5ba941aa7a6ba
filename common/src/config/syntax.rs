//! corosync.conf syntax: lines into a tree of sections and `key: value` pairs.
//! Nothing here knows what a key means; that is `parse.rs`.

use super::{ConfigError, MAX_CONFIG_BYTES};

/// Sections nest at most this deep (corosync.conf needs 3: nodelist/node, logging/logger_subsys).
pub(crate) const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub name: String,
    /// Line of `name {`; 0 for the file itself.
    pub line: usize,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Pair(Pair),
    Section(Section),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A name of a section or key: no blanks, no braces, no separators.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '{' | '}' | ':' | '=' | '#'))
}

/// Split the text into the root section (the file). The total number of lines
/// processed is returned too, for errors about the end of the file.
pub(crate) fn tokenize(text: &str) -> Result<(Section, usize), ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { bytes: text.len(), limit: MAX_CONFIG_BYTES });
    }
    // stack[0] is the root; the innermost open section is last.
    let mut stack: Vec<Section> = vec![Section { name: String::new(), line: 0, entries: Vec::new() }];
    let mut last_line = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        last_line = line;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content == "}" {
            close(&mut stack, line)?;
            continue;
        }
        if let Some(head) = content.strip_suffix('{') {
            open(&mut stack, head.trim(), line)?;
            continue;
        }
        if let Some(head) = content.strip_suffix('}') {
            // `name { }`: an empty section on one line.
            if let Some(name) = head.trim_end().strip_suffix('{') {
                open(&mut stack, name.trim(), line)?;
                close(&mut stack, line)?;
                continue;
            }
            return Err(ConfigError::Syntax {
                line,
                message: format!("'}}' after a value in '{}'", clip(content)),
                hint: "put each '}' on its own line",
            });
        }
        let sep = content.find([':', '=']);
        let Some(sep) = sep else {
            return Err(ConfigError::Syntax {
                line,
                message: format!("cannot read '{}'", clip(content)),
                hint: "expected 'key: value', 'name {' or '}'",
            });
        };
        let key = content[..sep].trim();
        let value = content[sep + 1..].trim();
        if !is_name(key) {
            return Err(ConfigError::Syntax {
                line,
                message: format!("'{}' is not a key name", clip(key)),
                hint: "a key is one word followed by ':' and its value",
            });
        }
        if value.contains('{') {
            return Err(ConfigError::Syntax {
                line,
                message: format!("'{{' in the value of '{key}'"),
                hint: "open a section with 'name {' on its own line",
            });
        }
        let top = stack.last_mut().expect("stack always holds the root");
        top.entries.push(Entry::Pair(Pair { key: key.to_string(), value: value.to_string(), line }));
    }
    if stack.len() > 1 {
        let open = stack.last().expect("checked above");
        return Err(ConfigError::UnbalancedBraces {
            line: open.line,
            message: format!("section '{}' opened here is never closed", open.name),
            hint: "add a '}' on its own line after its last entry",
        });
    }
    let root = stack.pop().expect("stack always holds the root");
    Ok((root, last_line.max(1)))
}

fn open(stack: &mut Vec<Section>, name: &str, line: usize) -> Result<(), ConfigError> {
    if !is_name(name) {
        return Err(ConfigError::Syntax {
            line,
            message: format!("'{}' is not a section name", clip(name)),
            hint: "a section starts with one word followed by '{', e.g. 'totem {'",
        });
    }
    if stack.len() > MAX_DEPTH {
        return Err(ConfigError::Syntax {
            line,
            message: format!("section '{name}' is nested more than {MAX_DEPTH} deep"),
            hint: "a '}' is probably missing above",
        });
    }
    stack.push(Section { name: name.to_string(), line, entries: Vec::new() });
    Ok(())
}

fn close(stack: &mut Vec<Section>, line: usize) -> Result<(), ConfigError> {
    if stack.len() <= 1 {
        return Err(ConfigError::UnbalancedBraces {
            line,
            message: "'}' closes no open section".to_string(),
            hint: "remove it, or add the 'name {' it was meant to close",
        });
    }
    let done = stack.pop().expect("len checked above");
    let parent = stack.last_mut().expect("len checked above");
    parent.entries.push(Entry::Section(done));
    Ok(())
}

/// Keep quoted input short in messages (at most 40 characters).
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}...")
    }
}
