//! The Redis backend (`--redis URL`): every store a namespace of one Redis database.
//!
//! Store `S` keeps the value of key `K` at `tcpy:{S}:v:K`, its keys in the sorted set
//! `tcpy:{S}:keys` (all scores 0, so `ZRANGEBYLEX` pages them in byte order, as redb
//! does) and its byte total at `tcpy:{S}:bytes`. The `{S}` hash tag keeps a store on
//! one Redis Cluster slot. Every write is one Lua script, so it is atomic on the
//! server however many hosts share it; no WATCH on a shared connection.
//!
//! One [`ConnectionManager`] multiplexes every request's operations on one connection
//! and reconnects by itself; the caller bounds each operation in time.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, Value};
use std::time::Duration;

use super::semantics::MAX_PAGE;
use super::{OpenError, Quota, StoreError, StoreName, Write, Written};

/// Shared by every write script: `change(vkeys, names, values)` sets (`values[i]`
/// a string) or removes (`values[i] == false`) each key, all or none, within the
/// quota in ARGV[1] (keys) and ARGV[2] (bytes), -1 for none. KEYS[1] is the index,
/// KEYS[2] the byte total. Returns nil when done, or the quota reply `{3, message}`.
const CHANGE: &str = r#"
local function change(vkeys, names, values)
  local max_keys, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
  local keys0 = redis.call('ZCARD', KEYS[1])
  local bytes0 = tonumber(redis.call('GET', KEYS[2]) or '0')
  local keys, bytes, seen = keys0, bytes0, {}
  for i, vkey in ipairs(vkeys) do
    local before = seen[vkey]
    if before == nil then
      if redis.call('EXISTS', vkey) == 1 then before = redis.call('STRLEN', vkey) else before = false end
    end
    local after = false
    if values[i] then after = string.len(values[i]) end
    local name = string.len(names[i])
    if before and after then bytes = bytes - before + after
    elseif after then keys = keys + 1; bytes = bytes + name + after
    elseif before then keys = keys - 1; bytes = bytes - name - before end
    seen[vkey] = after
  end
  if max_keys >= 0 and keys > keys0 and keys > max_keys then
    return {3, keys .. ' keys, over its limit of ' .. max_keys}
  end
  if max_bytes >= 0 and bytes > bytes0 and bytes > max_bytes then
    return {3, bytes .. ' bytes, over its limit of ' .. max_bytes}
  end
  for i, vkey in ipairs(vkeys) do
    if values[i] then
      redis.call('SET', vkey, values[i])
      redis.call('ZADD', KEYS[1], 0, names[i])
    else
      redis.call('DEL', vkey)
      redis.call('ZREM', KEYS[1], names[i])
    end
  end
  redis.call('SET', KEYS[2], bytes)
  return nil
end
"#;

/// Sets (ARGV[3] == 'set': ARGV[4..] name, value pairs) or removes (ARGV[4..] names)
/// the keys at KEYS[3..]. Reply `{0}`, or the quota's.
const SET_OR_DELETE: &str = r#"
local vkeys, names, values = {}, {}, {}
local set = ARGV[3] == 'set'
for i = 3, #KEYS do
  local n = i - 2
  vkeys[n] = KEYS[i]
  if set then names[n] = ARGV[2 + 2 * n]; values[n] = ARGV[3 + 2 * n]
  else names[n] = ARGV[3 + n]; values[n] = false end
end
return change(vkeys, names, values) or {0}
"#;

/// Adds ARGV[4] to the counter at KEYS[3] (name ARGV[3]) with INCRBY, which keeps it
/// as decimal text. Reply `{1, new value as text}`, `{4}` not an integer, `{5}`
/// overflow, or the quota's (the increment undone).
const INCREMENT: &str = r#"
local old = redis.call('GET', KEYS[3])
local done = redis.pcall('INCRBY', KEYS[3], ARGV[4])
if type(done) == 'table' and done.err then
  if string.find(done.err, 'overflow') then return {5} end
  return {4}
end
local new = redis.call('GET', KEYS[3])
-- Account for the change as if it were a SET: put the old value back first.
if old then redis.call('SET', KEYS[3], old) else redis.call('DEL', KEYS[3]) end
return change({KEYS[3]}, {ARGV[3]}, {new}) or {1, new}
"#;

/// Sets KEYS[3] (name ARGV[3]) to ARGV[6] if it holds ARGV[5] (ARGV[4] == '1') or is
/// absent (ARGV[4] == '0'). Reply `{0}`, `{2, current}` / `{2}` if it changed, or
/// the quota's.
const SWAP: &str = r#"
local current = redis.call('GET', KEYS[3])
if ARGV[4] == '1' then
  if current ~= ARGV[5] then if current then return {2, current} end return {2} end
elseif current then return {2, current} end
return change({KEYS[3]}, {ARGV[3]}, {ARGV[6]}) or {0}
"#;

/// Replaces KEYS[1] by ARGV[2] for ARGV[3] ms (ARGV[2] == '': removes it) if it holds
/// ARGV[1]. Reply 1 if it did, 0 if not.
const SETTLE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"#;

/// The Redis key of ledger entry `id`.
fn ledger_key(id: &str) -> String {
    format!("tcpy:ledger:{id}")
}

/// `duration` in whole milliseconds, at least 1 (Redis refuses a zero expiry).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Redis-backed stores: one connection manager, the write scripts.
pub(super) struct RedisStores {
    connection: ConnectionManager,
    address: String,
    set_or_delete: Script,
    increment: Script,
    swap: Script,
    settle: Script,
}

/// A store's Redis keys.
struct Layout {
    prefix: String,
}

impl Layout {
    fn new(store: &StoreName) -> Self {
        Self {
            prefix: format!("tcpy:{{{store}}}:"),
        }
    }

    fn value(&self, key: &str) -> String {
        format!("{}v:{key}", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}keys", self.prefix)
    }

    fn bytes(&self) -> String {
        format!("{}bytes", self.prefix)
    }
}

impl RedisStores {
    /// Stores in the Redis at `url`; connects on first use. `timeout` bounds each
    /// connection attempt and each reply.
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, OpenError> {
        let client = Client::open(url).map_err(|error| OpenError::RedisUrl(error.to_string()))?;
        // NB: only host and port reach the log, never the password or the URL.
        let address = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| OpenError::RedisUrl(error.to_string()))?;
        Ok(Self {
            connection,
            address,
            set_or_delete: Script::new(&format!("{CHANGE}{SET_OR_DELETE}")),
            increment: Script::new(&format!("{CHANGE}{INCREMENT}")),
            swap: Script::new(&format!("{CHANGE}{SWAP}")),
            settle: Script::new(SETTLE),
        })
    }

    /// `host:port` of the server.
    pub(super) fn address(&self) -> &str {
        &self.address
    }

    pub(super) async fn get_many(
        &self,
        store: &StoreName,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let layout = Layout::new(store);
        let mut command = redis::cmd("MGET");
        for key in keys {
            command.arg(layout.value(key));
        }
        command
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|error| self.failed(&error))
    }

    pub(super) async fn exists(&self, store: &StoreName, key: &str) -> Result<bool, StoreError> {
        redis::cmd("EXISTS")
            .arg(Layout::new(store).value(key))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|error| self.failed(&error))
    }

    pub(super) async fn list(
        &self,
        store: &StoreName,
        after: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let start = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        redis::cmd("ZRANGEBYLEX")
            .arg(Layout::new(store).index())
            .arg(start)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_PAGE)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|error| self.failed(&error))
    }

    pub(super) async fn write(
        &self,
        store: &StoreName,
        write: Write,
        quota: Quota,
    ) -> Result<Written, StoreError> {
        let layout = Layout::new(store);
        let limit = |max: Option<u64>| max.map_or(-1, |max| i64::try_from(max).unwrap_or(i64::MAX));
        let (script, key) = match &write {
            Write::Set { key, .. } | Write::Delete { key } => (&self.set_or_delete, key.as_str()),
            Write::Increment { key, .. } => (&self.increment, key.as_str()),
            Write::Swap { key, .. } => (&self.swap, key.as_str()),
            Write::SetMany(_) | Write::DeleteMany(_) => (&self.set_or_delete, ""),
        };
        let mut invocation = script.prepare_invoke();
        invocation
            .key(layout.index())
            .key(layout.bytes())
            .arg(limit(quota.max_keys))
            .arg(limit(quota.max_bytes));
        match &write {
            Write::Set { key, value } => {
                invocation
                    .key(layout.value(key))
                    .arg("set")
                    .arg(key)
                    .arg(value.as_slice());
            }
            Write::Delete { key } => {
                invocation.key(layout.value(key)).arg("del").arg(key);
            }
            Write::SetMany(entries) => {
                invocation.arg("set");
                for (key, value) in entries {
                    invocation.key(layout.value(key)).arg(key).arg(value.as_slice());
                }
            }
            Write::DeleteMany(keys) => {
                invocation.arg("del");
                for key in keys {
                    invocation.key(layout.value(key)).arg(key);
                }
            }
            Write::Increment { key, delta } => {
                invocation.key(layout.value(key)).arg(key).arg(*delta);
            }
            Write::Swap { key, expected, value } => {
                invocation.key(layout.value(key)).arg(key);
                match expected {
                    Some(expected) => invocation.arg("1").arg(expected.as_slice()),
                    None => invocation.arg("0").arg(""),
                };
                invocation.arg(value.as_slice());
            }
        }
        let reply: Value = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|error| self.failed(&error))?;
        self.written(store, key, reply)
    }

    /// Claims ledger entry `id` with `record` for `lease`, unless it is held: `None`
    /// when claimed, else the record there. Redis expires the entry by itself.
    pub(super) async fn claim(
        &self,
        id: &str,
        record: &[u8],
        lease: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = ledger_key(id);
        // An entry that expires between the SET and the GET is claimed on the next turn.
        for _ in 0..3 {
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(record)
                .arg("NX")
                .arg("PX")
                .arg(millis(lease))
                .query_async(&mut self.connection.clone())
                .await
                .map_err(|error| self.failed(&error))?;
            if claimed.is_some() {
                return Ok(None);
            }
            let held: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut self.connection.clone())
                .await
                .map_err(|error| self.failed(&error))?;
            if let Some(held) = held {
                return Ok(Some(held));
            }
        }
        Err(StoreError::Backend(format!(
            "redis at {}: an idempotency key kept expiring while it was claimed",
            self.address
        )))
    }

    /// Replaces ledger entry `id` by `record` for `ttl` (`None`: removes it) if it
    /// still holds `expected`; whether it did.
    pub(super) async fn settle(
        &self,
        id: &str,
        expected: &[u8],
        record: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .settle
            .key(ledger_key(id))
            .arg(expected)
            .arg(record.unwrap_or_default())
            .arg(millis(ttl))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|error| self.failed(&error))?;
        Ok(done == 1)
    }

    /// What a write script's reply says.
    fn written(&self, store: &StoreName, key: &str, reply: Value) -> Result<Written, StoreError> {
        let unexpected =
            || StoreError::Backend(format!("redis at {}: unexpected script reply", self.address));
        let Value::Array(items) = reply else {
            return Err(unexpected());
        };
        let mut items = items.into_iter();
        let Some(Value::Int(code)) = items.next() else {
            return Err(unexpected());
        };
        let text = |value: Option<Value>| match value {
            Some(Value::BulkString(bytes)) => Some(bytes),
            _ => None,
        };
        match code {
            0 => Ok(Written::Done),
            1 => text(items.next())
                .and_then(|counter| super::parse_counter(&counter))
                .map(Written::Counter)
                .ok_or_else(unexpected),
            2 => Ok(Written::Changed(text(items.next()))),
            3 => Err(StoreError::Quota {
                store: store.to_string(),
                what: text(items.next())
                    .map(|what| String::from_utf8_lossy(&what).into_owned())
                    .unwrap_or_default(),
            }),
            4 => Err(StoreError::NotInteger { key: key.to_owned() }),
            5 => Err(StoreError::Overflow { key: key.to_owned() }),
            _ => Err(unexpected()),
        }
    }

    fn failed(&self, error: &redis::RedisError) -> StoreError {
        StoreError::Backend(format!("redis at {}: {error}", self.address))
    }
}
