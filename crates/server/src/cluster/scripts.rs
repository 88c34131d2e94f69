//! The Lua scripts of [`super::redis::RedisCluster`]. Each runs atomically on the server, which
//! is what makes "first join anywhere", "last leave anywhere", a reaped node's leaves and the
//! SSE cap exact across nodes. Times are the server's (`TIME`), so nodes' clocks never matter.
//!
//! Keys (after the cluster's prefix, `liveplan:<cluster id>:`, written `liveplan:` in the
//! scripts' text and replaced when they are made): `nodes` (sorted set: node → expiry in ms), `presence:{project}`
//! (hash: `{node}:{user}` → `[connections, name]`), `presence:{project}:{user}` (set of nodes
//! holding the user there), `node-projects:{node}`, `sse:{user}` (hash: node → open streams),
//! `node-sse:{node}`, `rate:{…}` (fixed windows). A node is present while it is in `nodes`; a
//! survivor removes an expired one and everything it held.

/// The server's time in ms; shared head of the scripts.
const NOW: &str = r#"
local nodes = 'liveplan:nodes'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function held_elsewhere(holders, me)
  for _, other in ipairs(redis.call('SMEMBERS', holders)) do
    if other ~= me and redis.call('ZSCORE', nodes, other) then return true end
  end
  return false
end
"#;

/// ARGV: node, ttl ms, JSON `[[project, user, name, connections, joined 0|1], …]`.
/// Returns one 0/1 per change: whether it changed the cluster's roster.
const PRESENCE: &str = r#"
local me = ARGV[1]
redis.call('ZADD', nodes, now + tonumber(ARGV[2]), me)
local out = {}
for i, c in ipairs(cjson.decode(ARGV[3])) do
  local project, user, name, count, joined = c[1], c[2], c[3], tonumber(c[4]), tonumber(c[5])
  local roster = 'liveplan:presence:' .. project
  local holders = roster .. ':' .. user
  if count > 0 then
    redis.call('HSET', roster, me .. ':' .. user, cjson.encode({count, name}))
    redis.call('SADD', holders, me)
    redis.call('SADD', 'liveplan:node-projects:' .. me, project)
  else
    redis.call('HDEL', roster, me .. ':' .. user)
    redis.call('SREM', holders, me)
  end
  local changed = 0
  if not held_elsewhere(holders, me) then
    if (joined == 1 and count == 1) or (joined == 0 and count == 0) then changed = 1 end
  end
  out[i] = changed
end
return out
"#;

/// ARGV: node, ttl ms, JSON `{"p": {project: [[user, name, connections], …]}, "s": {user: n}}`.
/// Replaces the node's published state, then reaps expired nodes. Returns JSON
/// `[[project, user, name], …]`: users no node holds any more.
const HEARTBEAT: &str = r#"
local me = ARGV[1]
redis.call('ZADD', nodes, now + tonumber(ARGV[2]), me)
local state = cjson.decode(ARGV[3])
local mine = 'liveplan:node-projects:' .. me
local projects = {}
for _, p in ipairs(redis.call('SMEMBERS', mine)) do projects[p] = true end
for p, _ in pairs(state.p) do projects[p] = true end
local prefix = me .. ':'
for p, _ in pairs(projects) do
  local roster = 'liveplan:presence:' .. p
  local want = {}
  for _, e in ipairs(state.p[p] or {}) do want[e[1]] = e end
  for _, f in ipairs(redis.call('HKEYS', roster)) do
    if string.sub(f, 1, #prefix) == prefix then
      local user = string.sub(f, #prefix + 1)
      if not want[user] then
        redis.call('HDEL', roster, f)
        redis.call('SREM', roster .. ':' .. user, me)
      end
    end
  end
  local any = false
  for user, e in pairs(want) do
    redis.call('HSET', roster, prefix .. user, cjson.encode({e[3], e[2]}))
    redis.call('SADD', roster .. ':' .. user, me)
    any = true
  end
  if any then redis.call('SADD', mine, p) else redis.call('SREM', mine, p) end
end
local sse_mine = 'liveplan:node-sse:' .. me
local users = {}
for _, u in ipairs(redis.call('SMEMBERS', sse_mine)) do users[u] = true end
for u, _ in pairs(state.s) do users[u] = true end
for u, _ in pairs(users) do
  local n = tonumber(state.s[u] or 0)
  local key = 'liveplan:sse:' .. u
  if n > 0 then
    redis.call('HSET', key, me, n)
    redis.call('PEXPIRE', key, 86400000)
    redis.call('SADD', sse_mine, u)
  else
    redis.call('HDEL', key, me)
    redis.call('SREM', sse_mine, u)
  end
end
local leaves = {}
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. now)) do
  if dead ~= me then
    redis.call('ZREM', nodes, dead)
    local theirs = 'liveplan:node-projects:' .. dead
    local dprefix = dead .. ':'
    for _, p in ipairs(redis.call('SMEMBERS', theirs)) do
      local roster = 'liveplan:presence:' .. p
      for _, f in ipairs(redis.call('HKEYS', roster)) do
        if string.sub(f, 1, #dprefix) == dprefix then
          local user = string.sub(f, #dprefix + 1)
          local entry = cjson.decode(redis.call('HGET', roster, f))
          redis.call('HDEL', roster, f)
          local holders = roster .. ':' .. user
          redis.call('SREM', holders, dead)
          if not held_elsewhere(holders, dead) then
            table.insert(leaves, {p, user, entry[2]})
          end
        end
      end
    end
    redis.call('DEL', theirs)
    local dsse = 'liveplan:node-sse:' .. dead
    for _, u in ipairs(redis.call('SMEMBERS', dsse)) do
      redis.call('HDEL', 'liveplan:sse:' .. u, dead)
    end
    redis.call('DEL', dsse)
  end
end
if #leaves == 0 then return '[]' end
return cjson.encode(leaves)
"#;

/// ARGV: project, node. Returns JSON `[[user, "[connections, name]"], …]` of the other
/// present nodes.
const ROSTER: &str = r#"
local roster = 'liveplan:presence:' .. ARGV[1]
local flat = redis.call('HGETALL', roster)
local out = {}
for i = 1, #flat, 2 do
  local f = flat[i]
  local sep = string.find(f, ':', 1, true)
  if sep then
    local node = string.sub(f, 1, sep - 1)
    if node ~= ARGV[2] and redis.call('ZSCORE', nodes, node) then
      table.insert(out, {string.sub(f, sep + 1), flat[i + 1]})
    end
  end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"#;

/// ARGV: user, node, max. 1 when a slot was taken.
const SSE_ACQUIRE: &str = r#"
local key = 'liveplan:sse:' .. ARGV[1]
local flat = redis.call('HGETALL', key)
local total = 0
for i = 1, #flat, 2 do
  local node = flat[i]
  if node == ARGV[2] or redis.call('ZSCORE', nodes, node) then
    total = total + tonumber(flat[i + 1])
  else
    redis.call('HDEL', key, node)
  end
end
if total >= tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', key, ARGV[2], 1)
redis.call('PEXPIRE', key, 86400000)
redis.call('SADD', 'liveplan:node-sse:' .. ARGV[2], ARGV[1])
return 1
"#;

/// ARGV: user, node.
const SSE_RELEASE: &str = r#"
local key = 'liveplan:sse:' .. ARGV[1]
if redis.call('HINCRBY', key, ARGV[2], -1) <= 0 then
  redis.call('HDEL', key, ARGV[2])
  redis.call('SREM', 'liveplan:node-sse:' .. ARGV[2], ARGV[1])
end
return 1
"#;

/// KEYS: the window's counter. ARGV: limit, window ms. 1 when within the limit.
const HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return 1 end
return 0
"#;

pub(super) struct Scripts {
    pub presence: redis::Script,
    pub heartbeat: redis::Script,
    pub roster: redis::Script,
    pub sse_acquire: redis::Script,
    pub sse_release: redis::Script,
    pub hit: redis::Script,
}

impl Scripts {
    /// The scripts over the keys of the cluster whose keys start with `prefix`.
    pub fn new(prefix: &str) -> Scripts {
        let with_now = |body: &str| {
            redis::Script::new(&format!("{NOW}{body}").replace("'liveplan:", &format!("'{prefix}")))
        };
        Scripts {
            presence: with_now(PRESENCE),
            heartbeat: with_now(HEARTBEAT),
            roster: with_now(ROSTER),
            sse_acquire: with_now(SSE_ACQUIRE),
            sse_release: with_now(SSE_RELEASE),
            // Its key comes from the caller, prefixed there.
            hit: redis::Script::new(HIT),
        }
    }
}
