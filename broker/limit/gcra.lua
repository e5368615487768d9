-- GCRA for one key, atomically, on the server's clock (see redis.go).
-- KEYS[1]  the key: <prefix>rl:<key>, holding the TAT in microseconds
--          since 1970 as a decimal integer
-- ARGV[1]  emission interval, microseconds
-- ARGV[2]  tolerance (burst × interval), microseconds
-- ARGV[3]  cost
-- Returns {allowed (0 or 1), reset after, retry after} in microseconds.
--
-- Every number stays below 2^53, so Lua's floats hold them exactly; the
-- TAT is written with %d, as tostring would print 15 significant digits.
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local stored = redis.call('GET', KEYS[1])
local tat = stored and tonumber(stored)
if not tat or tat < now then
	tat = now
end

local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance
if allow_at > now then
	return {0, tat - now, allow_at - now}
end

local reset = new_tat - now
if reset > 0 then
	-- The key expires when its TAT passes: from then on it has its full
	-- burst, which is what an absent key means.
	local ttl_ms = math.ceil(reset / 1000)
	redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
end
return {1, reset, 0}
