//! Invalidation in Redis: deleting keys in batches, taking an index (see
//! `index`), prefix and clear-all through the keyspace walk.

use futures_util::future::try_join_all;
use strata_core::Error;
use strata_core::key::path_of_url;
use strata_core::store::Invalidation;

use super::{Conn, DELETE_BATCH, RedisStore};

impl RedisStore {
    /// Deletes keys; returns how many existed.
    pub(super) async fn delete_keys(&self, keys: &[String]) -> Result<u64, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        let cluster = matches!(self.inner.conn, Conn::Cluster(_));
        let mut deleted = 0;
        for chunk in keys.chunks(DELETE_BATCH) {
            deleted += self
                .run("DEL", |conn| async move {
                    if cluster {
                        // One key per command: keys of a chunk live in many slots.
                        let deletions: Vec<_> = chunk
                            .iter()
                            .cloned()
                            .map(|key| {
                                let mut conn = conn.clone();
                                async move {
                                    redis::cmd("DEL")
                                        .arg(key)
                                        .query_async::<u64>(&mut conn)
                                        .await
                                }
                            })
                            .collect();
                        let counts = try_join_all(deletions).await?;
                        Ok(counts.into_iter().sum::<u64>())
                    } else {
                        let mut conn = conn;
                        redis::cmd("DEL")
                            .arg(chunk)
                            .query_async::<u64>(&mut conn)
                            .await
                    }
                })
                .await?;
        }
        Ok(deleted)
    }

    /// Drops what `what` names.
    pub async fn invalidate_entries(&self, what: &Invalidation) -> Result<u64, Error> {
        let prefix = &self.inner.prefix;
        match what {
            Invalidation::Key(key) => self.delete_keys(std::slice::from_ref(key)).await,
            Invalidation::Url(url) => {
                self.take_index(self.index_key('p', &path_of_url(url)))
                    .await
            }
            Invalidation::Tag(tag) => self.take_index(self.index_key('t', tag)).await,
            Invalidation::Tags(tags) => {
                let mut total = 0;
                for tag in tags {
                    total += self.take_index(self.index_key('t', tag)).await?;
                }
                Ok(total)
            }
            Invalidation::User(user) => self.take_index(self.index_key('u', user)).await,
            Invalidation::Prefix(name) => {
                let http = format!("{}http:{}*", glob_escape(prefix), glob_escape(name));
                let values = format!("{}{}*", glob_escape(prefix), glob_escape(name));
                // The value walk must not reach HTTP entries or index sets
                // that merely start with the same letters (`"h"` would
                // otherwise match every `http:` key), as the memory store,
                // which matches names, would not.
                let http_keys = format!("{prefix}http:");
                let index_keys = format!("{prefix}~");
                let is_value =
                    |key: &str| !key.starts_with(&http_keys) && !key.starts_with(&index_keys);
                Ok(self.scan_delete(&http, |_| true).await?
                    + self.scan_delete(&values, is_value).await?)
            }
            Invalidation::All => {
                self.scan_delete(&format!("{}*", glob_escape(prefix)), |_| true)
                    .await
            }
            other => Err(Error::Store(format!(
                "redis: unsupported invalidation {other:?}"
            ))),
        }
    }
}

/// Escapes the glob characters of `text` for `SCAN ... MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
