---@meta
-- The methods StreamPeerTCP and StreamPeerTLS share (Godot's StreamPeer; docs/StreamPeer.md).
-- Each `get_*`/`put_*` returns its value (true for a put) or nil, message, code.

---@class tlspeer.StreamPeer
local StreamPeer = {}

---Bytes that can be read now without waiting.
---@return integer
function StreamPeer:get_available_bytes() end

---Up to n bytes, possibly ""; never blocks.
---@param n integer
---@return string|nil data
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_partial_data(n) end

---Exactly n bytes, waiting up to the timeout.
---@param n integer
---@return string|nil data
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_data(n) end

---Sends what the socket takes now (s:sub(from)); the number of bytes taken.
---@param s string
---@param from? integer 1 by default
---@return integer|nil sent
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_partial_data(s, from) end

---Sends all of s, waiting up to the timeout.
---@param s string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_data(s) end

---@param seconds number how long the blocking methods wait (30)
function StreamPeer:set_timeout(seconds) end

---@return number seconds
function StreamPeer:get_timeout() end

---@param enabled boolean
function StreamPeer:set_big_endian(enabled) end

---@return boolean
function StreamPeer:is_big_endian_enabled() end

---@param value integer -128..127
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_8(value) end

---@param value integer 0..255
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_u8(value) end

---@param value integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_16(value) end

---@param value integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_u16(value) end

---@param value integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_32(value) end

---@param value integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_u32(value) end

---@param value integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_64(value) end

---@param value integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_u64(value) end

---@param value number
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_float(value) end

---@param value number
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_double(value) end

---@return integer|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_8() end

---@return integer|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_u8() end

---@return integer|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_16() end

---@return integer|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_u16() end

---@return integer|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_32() end

---@return integer|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_u32() end

---A number on runtimes without 64-bit integers (exact up to 2^53).
---@return integer|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_64() end

---@return integer|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_u64() end

---@return number|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_float() end

---@return number|nil value
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_double() end

---A u32 byte count, then the bytes.
---@param s string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_string(s) end

---A u32 byte count, then the bytes of valid UTF-8 text.
---@param s string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:put_utf8_string(s) end

---n bytes; without n (or -1), a u32 count first.
---@param n? integer
---@return string|nil s
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_string(n) end

---@param n? integer
---@return string|nil s
---@return string? message
---@return tlspeer.Error? code
function StreamPeer:get_utf8_string(n) end
