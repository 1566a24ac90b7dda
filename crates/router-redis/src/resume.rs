//! Resume across nodes, over Redis.
//!
//! - Every message for a node goes into that node's inbox stream
//!   (`{sm:node:NODE}:in`, capped, expiring) and onto its channel in one script, so the
//!   node receives messages in the stream's order; what it publishes carries the entry
//!   id first (the byte [`KEPT`], the id, a newline, then the message as before).
//! - A resumable session is recorded under `sm:rs:{SESSION}` (a hash: the record,
//!   its node, its current token, whether it was released), found by token through
//!   `sm:rt:TOKEN`, and listed per node in `sm:rsn:NODE`.
//! - Its frames are kept in the stream `sm:rs:{SESSION}:out`, entry `0-SEQ` per frame
//!   (fields `p`, the payload, and `h`, the last inbox position queued before it),
//!   trimmed to what the node keeps in memory.

use std::time::Duration;

use redis::{AsyncCommands, Script, Value as RedisValue};
use signal_core::{
    ids::{ClientId, RoomId},
    router::{InboxPos, MemberEntry, MirroredFrame, NodeMessage, ResumeRecord, RouterError},
};

use crate::{RedisRouter, Wire, batch, err, members_key, meta_key, node_channel, node_members_key};

/// Frames of one session to keep, and who waits for them.
pub(crate) struct MirrorRequest {
    session: uuid::Uuid,
    frames: Vec<MirroredFrame>,
    oldest: u64,
    done: tokio::sync::oneshot::Sender<Result<(), RouterError>>,
}

/// Keeps what sessions' writers hand over, in batches: whatever was handed over while
/// the previous batch was on its way goes in the next.
pub(crate) async fn write_mirrors(
    router: std::sync::Weak<RedisRouter>,
    mut reqs: tokio::sync::mpsc::Receiver<MirrorRequest>,
) {
    let mut buf = Vec::with_capacity(256);
    while reqs.recv_many(&mut buf, 256).await > 0 {
        let Some(r) = router.upgrade() else { return };
        r.keep_frames(&mut buf).await;
    }
}

/// The first byte of a message kept in the inbox stream (never a batch's or a CBOR
/// message's first byte).
pub(crate) const KEPT: u8 = 0xFE;

/// Entries an inbox stream keeps at most (approximately).
const INBOX_CAP: usize = 100_000;

/// How long a session's record and frames live without a write (a session whose node
/// is lost expires sooner: its window).
const RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

// KEYS: inbox stream. ARGV: PUBLISH or SPUBLISH, channel, payload, cap, ttl ms.
const DELIVER: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'p', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return redis.call(ARGV[1], ARGV[2], '\254' .. id .. '\n' .. ARGV[3])
";

// KEYS: frames stream, record. ARGV: oldest seq kept, ttl ms, then (seq, payload, hw).
pub(crate) const MIRROR: &str = r"
local top = 0
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then top = tonumber(string.match(last[1][1], '-(%d+)$')) end
for i = 3, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > top then
    redis.call('XADD', KEYS[1], '0-' .. ARGV[i], 'p', ARGV[i + 1], 'h', ARGV[i + 2])
    top = seq
  end
end
redis.call('XTRIM', KEYS[1], 'MINID', '0-' .. ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return top
";

// KEYS: record, frames. ARGV: token, from node, this node.
const TAKE: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return false end
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[2] then return false end
redis.call('HSET', KEYS[1], 'node', ARGV[3], 'released', '0')
return {redis.call('HGET', KEYS[1], 'rec'), redis.call('XRANGE', KEYS[2], '-', '+')}
";

// KEYS: record. ARGV: this node.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'released', '1')
return 1
";

// KEYS: record, frames. ARGV: token, node.
const EXPIRE: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
";

// KEYS: members, meta. ARGV: client, from node (JSON), this node (JSON).
const MOVE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
local pat = '"node":' .. ARGV[2]
local s, e = string.find(v, pat, 1, true)
if s then
  v = string.sub(v, 1, s - 1) .. '"node":' .. ARGV[3] .. string.sub(v, e + 1)
  redis.call('HSET', KEYS[1], ARGV[1], v)
end
return v
"#;

fn record_key(session: &uuid::Uuid) -> String {
    format!("sm:rs:{{{session}}}")
}

fn frames_key(session: &uuid::Uuid) -> String {
    format!("sm:rs:{{{session}}}:out")
}

fn token_key(token: &str) -> String {
    format!("sm:rt:{token}")
}

fn node_sessions_key(node: &str) -> String {
    format!("sm:rsn:{node}")
}

/// A node's inbox stream: in the same hash slot as its channel.
fn inbox_key(node: &str) -> String {
    format!("{{{}}}:in", node_channel(node))
}

/// Splits a message off this node's channel: the inbox entry it was kept as, if it
/// was, and the message.
pub(crate) fn split_kept(payload: bytes::Bytes) -> Result<(Option<String>, bytes::Bytes), String> {
    if payload.first() != Some(&KEPT) {
        return Ok((None, payload));
    }
    let nl = payload
        .iter()
        .take(64)
        .position(|b| *b == b'\n')
        .ok_or("no entry id")?;
    let id = std::str::from_utf8(&payload[1..nl])
        .map_err(|e| e.to_string())?
        .to_owned();
    Ok((Some(id), payload.slice(nl + 1..)))
}

/// The messages of one inbox entry, with their places.
fn entry_messages(id: &str, payload: Vec<u8>) -> Vec<(InboxPos, NodeMessage)> {
    if payload.first() == Some(&batch::TAG) {
        match batch::decode(&bytes::Bytes::from(payload)) {
            Ok((_, msgs)) => msgs
                .into_iter()
                .enumerate()
                .filter_map(|(i, m)| Some((InboxPos::parse(id, u32::try_from(i).ok()?)?, m)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cluster: an inbox entry does not parse");
                Vec::new()
            }
        }
    } else {
        match minicbor_serde::from_slice::<Wire>(&payload) {
            Ok(Wire::Deliver(m)) => InboxPos::parse(id, 0)
                .map(|p| (p, *m))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn bulk(v: &RedisValue) -> Option<&[u8]> {
    match v {
        RedisValue::BulkString(b) => Some(b),
        _ => None,
    }
}

fn text(v: &RedisValue) -> Option<String> {
    match v {
        RedisValue::BulkString(b) => String::from_utf8(b.clone()).ok(),
        RedisValue::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A stream entry's fields.
type Fields = Vec<(String, Vec<u8>)>;

/// A stream's entries: `[[id, [field, value, ...]], ...]`.
fn entries(v: &RedisValue) -> Vec<(String, Fields)> {
    let RedisValue::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|e| {
            let RedisValue::Array(parts) = e else {
                return None;
            };
            let id = text(parts.first()?)?;
            let fields = match parts.get(1)? {
                RedisValue::Array(f) => f
                    .chunks(2)
                    .filter_map(|kv| Some((text(kv.first()?)?, bulk(kv.get(1)?)?.to_vec())))
                    .collect(),
                RedisValue::Map(f) => f
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, bulk(v)?.to_vec())))
                    .collect(),
                _ => return None,
            };
            Some((id, fields))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

fn seq_of(id: &str) -> Option<u64> {
    id.split_once('-')?.1.parse().ok()
}

impl RedisRouter {
    /// The command that delivers `payload` to `node`: kept in its inbox stream first
    /// when resume across nodes is on.
    pub(crate) fn deliver_cmd(&self, node: &str, payload: Vec<u8>) -> redis::Cmd {
        let Some(window) = self.resume_window else {
            return self.publish_cmd(node, payload);
        };
        let ttl = window + self.ttl * 2 + Duration::from_secs(60);
        let mut c = redis::cmd("EVAL");
        c.arg(DELIVER)
            .arg(1)
            .arg(inbox_key(node))
            .arg(match self.con {
                crate::Con::Single(_) => "PUBLISH",
                crate::Con::Cluster(_) => "SPUBLISH",
            })
            .arg(node_channel(node))
            .arg(payload)
            .arg(INBOX_CAP)
            .arg(ttl.as_millis() as u64);
        c
    }

    async fn session_of(&self, token: &str) -> Result<Option<uuid::Uuid>, RouterError> {
        let mut con = self.con.clone();
        let sid: Option<String> = self.checked(con.get(token_key(token)).await)?;
        Ok(sid.and_then(|s| s.parse().ok()))
    }

    fn parse_record(
        fields: &std::collections::HashMap<String, String>,
    ) -> Result<Option<(String, ResumeRecord)>, RouterError> {
        let (Some(rec), Some(node), Some(token)) =
            (fields.get("rec"), fields.get("node"), fields.get("token"))
        else {
            return Ok(None);
        };
        let mut r: ResumeRecord = serde_json::from_str(rec).map_err(err)?;
        r.node = node.clone();
        r.released = fields.get("released").is_some_and(|v| v == "1");
        Ok(Some((token.clone(), r)))
    }

    pub(crate) fn resume_on(&self) -> bool {
        self.resume_window.is_some()
    }

    pub(crate) async fn r_open(
        &self,
        token: &str,
        record: &ResumeRecord,
        replaces: Option<&str>,
    ) -> Result<(), RouterError> {
        let rec = crate::encode(record)?;
        let ttl = RECORD_TTL.as_millis() as u64;
        let key = record_key(&record.session);
        let mut hset = redis::cmd("HSET");
        hset.arg(&key)
            .arg("rec")
            .arg(rec)
            .arg("node")
            .arg(&self.node_id)
            .arg("token")
            .arg(token)
            .arg("released")
            .arg("0");
        let mut exp = redis::cmd("PEXPIRE");
        exp.arg(&key).arg(ttl);
        let mut set = redis::cmd("SET");
        set.arg(token_key(token))
            .arg(record.session.to_string())
            .arg("PX")
            .arg(ttl);
        let mut add = redis::cmd("SADD");
        add.arg(node_sessions_key(&self.node_id))
            .arg(record.session.to_string());
        let mut cmds = vec![hset, exp, set, add];
        if let Some(old) = replaces {
            let mut del = redis::cmd("DEL");
            del.arg(token_key(old));
            cmds.push(del);
        }
        self.checked(self.query_all::<RedisValue>(cmds).await)
            .map(drop)
    }

    pub(crate) async fn r_close(&self, token: &str, session: &uuid::Uuid) {
        let mut del = redis::cmd("DEL");
        del.arg(record_key(session)).arg(frames_key(session));
        let mut del_token = redis::cmd("DEL");
        del_token.arg(token_key(token));
        let mut rem = redis::cmd("SREM");
        rem.arg(node_sessions_key(&self.node_id))
            .arg(session.to_string());
        if let Err(e) = self.checked(
            self.query_all::<RedisValue>(vec![del, del_token, rem])
                .await,
        ) {
            tracing::debug!(error = %e, "resume: could not forget a session in Redis");
        }
    }

    pub(crate) async fn r_record(&self, token: &str) -> Result<Option<ResumeRecord>, RouterError> {
        let Some(sid) = self.session_of(token).await? else {
            return Ok(None);
        };
        let mut con = self.con.clone();
        let fields: std::collections::HashMap<String, String> =
            self.checked(con.hgetall(record_key(&sid)).await)?;
        Ok(Self::parse_record(&fields)?
            .filter(|(t, _)| t == token)
            .map(|(_, r)| r))
    }

    pub(crate) async fn r_mirror(
        &self,
        session: &uuid::Uuid,
        frames: Vec<MirroredFrame>,
        oldest: u64,
    ) -> Result<(), RouterError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.mirrors
            .send(MirrorRequest {
                session: *session,
                frames,
                oldest,
                done,
            })
            .await
            .map_err(|_| err("router stopped"))?;
        rx.await.map_err(|_| err("router stopped"))?
    }

    /// Keeps the frames of every request in one round trip (a pipeline of scripts; on a
    /// Redis Cluster, each to its slot's primary, all in flight at once).
    async fn keep_frames(&self, reqs: &mut Vec<MirrorRequest>) {
        let cmds: Vec<redis::Cmd> = reqs
            .iter()
            .map(|r| {
                let mut c = redis::cmd("EVALSHA");
                c.arg(&self.mirror_sha)
                    .arg(2)
                    .arg(frames_key(&r.session))
                    .arg(record_key(&r.session))
                    .arg(r.oldest.max(1))
                    .arg(RECORD_TTL.as_millis() as u64);
                let last = r.frames.len().saturating_sub(1);
                for (i, f) in r.frames.iter().enumerate() {
                    c.arg(f.seq).arg(f.payload.as_ref());
                    // Only the newest kept frame's place is ever read (a takeover reads
                    // the last entry): the others carry none.
                    match f.hw.filter(|_| i == last) {
                        Some(h) => c.arg(h.to_string()),
                        None => c.arg(""),
                    };
                }
                c
            })
            .collect();
        let n = reqs.len();
        if self.query_all::<RedisValue>(cmds).await.is_ok() {
            self.set_healthy(true);
            for r in reqs.drain(..) {
                let _ = r.done.send(Ok(()));
            }
            metrics::histogram!("signal_resume_mirror_batch").record(n as f64);
            return;
        }
        // One by one: a server that has not seen the script yet is given it (and a
        // failure is told to its own request only).
        for r in reqs.drain(..) {
            let mut con = self.con.clone();
            let mut inv = self.scripts.mirror.prepare_invoke();
            inv.key(frames_key(&r.session))
                .key(record_key(&r.session))
                .arg(r.oldest.max(1))
                .arg(RECORD_TTL.as_millis() as u64);
            for f in &r.frames {
                inv.arg(f.seq)
                    .arg(f.payload.as_ref())
                    .arg(f.hw.map(|h| h.to_string()).unwrap_or_default());
            }
            let res = self.checked(inv.invoke_async::<i64>(&mut con).await);
            let _ = r.done.send(res.map(drop));
        }
    }

    pub(crate) async fn r_take_over(
        &self,
        token: &str,
        from: &str,
    ) -> Result<Option<signal_core::router::Takeover>, RouterError> {
        let Some(sid) = self.session_of(token).await? else {
            return Ok(None);
        };
        let mut con = self.con.clone();
        let got: RedisValue = self.checked(
            Script::new(TAKE)
                .key(record_key(&sid))
                .key(frames_key(&sid))
                .arg(token)
                .arg(from)
                .arg(&self.node_id)
                .invoke_async(&mut con)
                .await,
        )?;
        let RedisValue::Array(parts) = got else {
            return Ok(None);
        };
        let Some(rec) = parts.first().and_then(text) else {
            return Ok(None);
        };
        let mut record: ResumeRecord = serde_json::from_str(&rec).map_err(err)?;
        record.node = from.to_owned();
        let frames = parts
            .get(1)
            .map(entries)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, f)| {
                Some(MirroredFrame {
                    seq: seq_of(&id)?,
                    payload: bytes::Bytes::copy_from_slice(field(&f, "p")?),
                    hw: field(&f, "h")
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| h.parse().ok()),
                })
            })
            .collect();
        // The session is listed under this node now.
        let mut rem = redis::cmd("SREM");
        rem.arg(node_sessions_key(from)).arg(sid.to_string());
        let mut add = redis::cmd("SADD");
        add.arg(node_sessions_key(&self.node_id))
            .arg(sid.to_string());
        let _ = self.checked(self.query_all::<RedisValue>(vec![rem, add]).await);
        Ok(Some(signal_core::router::Takeover { record, frames }))
    }

    pub(crate) async fn r_release(&self, token: &str) {
        let Ok(Some(sid)) = self.session_of(token).await else {
            return;
        };
        let mut con = self.con.clone();
        let r: redis::RedisResult<i64> = Script::new(RELEASE)
            .key(record_key(&sid))
            .arg(&self.node_id)
            .invoke_async(&mut con)
            .await;
        if let Err(e) = self.checked(r) {
            tracing::warn!(error = %e, "resume: could not mark a session released");
        }
    }

    pub(crate) async fn r_ask_release(&self, node: &str, token: &str) -> Result<bool, RouterError> {
        self.publish(
            node,
            &Wire::Release {
                token: token.to_owned(),
            },
        )
        .await
    }

    pub(crate) async fn r_inbox_since(
        &self,
        node: &str,
        after: Option<InboxPos>,
    ) -> Result<Vec<(InboxPos, NodeMessage)>, RouterError> {
        let mut con = self.con.clone();
        let start = after.map_or_else(|| "-".to_owned(), |p| p.entry_id());
        let got: RedisValue = self.checked(
            redis::cmd("XRANGE")
                .arg(inbox_key(node))
                .arg(start)
                .arg("+")
                .query_async(&mut con)
                .await,
        )?;
        let mut out = Vec::new();
        for (id, fields) in entries(&got) {
            let Some(p) = field(&fields, "p") else {
                continue;
            };
            for (pos, msg) in entry_messages(&id, p.to_vec()) {
                if after.is_none_or(|a| pos > a) {
                    out.push((pos, msg));
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn r_move_member(
        &self,
        room: &RoomId,
        client: &ClientId,
        from: &str,
    ) -> Result<Option<MemberEntry>, RouterError> {
        let mut con = self.con.clone();
        let v: Option<String> = self.checked(
            Script::new(MOVE)
                .key(members_key(room))
                .key(meta_key(room))
                .arg(client.as_str())
                .arg(crate::encode(&from)?)
                .arg(crate::encode(&self.node_id)?)
                .invoke_async(&mut con)
                .await,
        )?;
        let Some(v) = v else { return Ok(None) };
        let entry = crate::decode_member(&v)?;
        let item = format!("{room}\n{client}");
        let mut rem = redis::cmd("SREM");
        rem.arg(node_members_key(from)).arg(&item);
        let mut add = redis::cmd("SADD");
        add.arg(node_members_key(&self.node_id)).arg(&item);
        let _ = self.checked(self.query_all::<RedisValue>(vec![rem, add]).await);
        Ok(Some(entry))
    }

    pub(crate) async fn r_session_moved(&self, client: &ClientId, from: &str) {
        let mut con = self.con.clone();
        let closed: Result<i64, _> = self.checked(
            self.scripts
                .close
                .key(crate::client_key(client))
                .arg(from)
                .arg(1)
                .invoke_async(&mut con)
                .await,
        );
        if matches!(closed, Ok(0)) {
            let _ = self.checked(
                con.srem::<_, _, ()>(crate::node_clients_key(from), client.as_str())
                    .await,
            );
        }
    }

    pub(crate) async fn r_resumables_on(
        &self,
        node: &str,
    ) -> Result<Vec<(String, ResumeRecord)>, RouterError> {
        let mut con = self.con.clone();
        let sids: Vec<String> = self.checked(con.smembers(node_sessions_key(node)).await)?;
        let mut out = Vec::with_capacity(sids.len());
        for sid in sids {
            let Ok(sid) = sid.parse::<uuid::Uuid>() else {
                continue;
            };
            let fields: std::collections::HashMap<String, String> =
                self.checked(con.hgetall(record_key(&sid)).await)?;
            if let Some((token, r)) = Self::parse_record(&fields)?
                && r.node == node
            {
                out.push((token, r));
            }
        }
        Ok(out)
    }

    pub(crate) async fn r_orphaned(&self, token: &str, rooms: &[RoomId], window: Duration) {
        let Ok(Some(sid)) = self.session_of(token).await else {
            return;
        };
        let mut con = self.con.clone();
        let key = record_key(&sid);
        let rec: Option<String> = con.hget(&key, "rec").await.unwrap_or(None);
        let Some(mut record) = rec.and_then(|r| serde_json::from_str::<ResumeRecord>(&r).ok())
        else {
            return;
        };
        record.rooms = rooms.to_vec();
        let Ok(rec) = crate::encode(&record) else {
            return;
        };
        // Long enough for the window, and for whoever takes it over to read it.
        let ttl = (window + Duration::from_secs(60)).as_millis() as u64;
        let mut hset = redis::cmd("HSET");
        hset.arg(&key).arg("rec").arg(rec);
        let mut cmds = vec![hset];
        for k in [key.clone(), frames_key(&sid), token_key(token)] {
            let mut c = redis::cmd("PEXPIRE");
            c.arg(k).arg(ttl);
            cmds.push(c);
        }
        if let Err(e) = self.checked(self.query_all::<RedisValue>(cmds).await) {
            tracing::warn!(error = %e, "resume: could not keep a lost node's session");
        }
    }

    pub(crate) async fn r_expire(&self, token: &str, node: &str) -> bool {
        let Ok(Some(sid)) = self.session_of(token).await else {
            return false;
        };
        let mut con = self.con.clone();
        let ended: Result<i64, _> = self.checked(
            Script::new(EXPIRE)
                .key(record_key(&sid))
                .key(frames_key(&sid))
                .arg(token)
                .arg(node)
                .invoke_async(&mut con)
                .await,
        );
        if !matches!(ended, Ok(1)) {
            return false;
        }
        let mut del = redis::cmd("DEL");
        del.arg(token_key(token));
        let mut rem = redis::cmd("SREM");
        rem.arg(node_sessions_key(node)).arg(sid.to_string());
        let _ = self.checked(self.query_all::<RedisValue>(vec![del, rem]).await);
        true
    }

    pub(crate) async fn r_posted_sent(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.outbox.send(crate::Posted::Barrier(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
