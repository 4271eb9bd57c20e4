-- tls.request(url, opts): one blocking request, for scripts and the REPL,
-- on a blocking HTTPClient: redirects (the origin rule of httputil),
-- gzip and deflate bodies decoded, proxies (opts.proxy, or the
-- environment as curl reads it), a body in memory, to a file or to a sink.
-- Game loops use HTTPRequest (httprequest.lua) instead: it never blocks.
local core = require "tlspeer.core"
local U = require "tlspeer.httputil"
local HTTPClient = require "tlspeer.http"
local check_options = require("tlspeer.options").check

local now = core._now
local S = HTTPClient
local METHODS, METHOD_IDS = U.METHODS, U.METHOD_IDS

-- What tls.request takes (see tlspeer.options); anything else raises.
local OPTIONS = {
  method = "string or number", headers = "table", body = "string",
  tls_options = "TLSOptions", timeout = "number", total_timeout = "number",
  max_redirects = "number", output = "path or open file", sink = "function",
  chunk_size = "number", accept_gzip = "boolean", body_size_limit = "number",
  proxy = "string or false", no_proxy = "string", keep_error_body = "boolean",
}

local function bad_option(name, what)
  error(("bad option '%s' to 'request' (%s)"):format(name, what), 3)
end

-- opts.output / opts.sink (their kinds checked) -> sink function, or nil
-- and the path to write.
local function open_sink(opts)
  local output = opts.output
  if output == nil then return opts.sink end
  if type(output) == "string" then return nil, output end
  return function(chunk) assert(output:write(chunk)) end
end

-- The proxy of one hop (false: none), or nil, message.
local function hop_proxy(scheme, host, opts, headers)
  local proxy, err = U.proxy_for(scheme, host, opts.proxy, opts.no_proxy)
  if proxy == nil then return nil, err end
  return U.proxy_with_caller_auth(proxy, headers)
end

-- tls.request(url, opts) -> body, code, headers | nil, message, code
local function request(url, opts)
  if type(url) ~= "string" then
    error("bad argument #1 to 'request' (URL string expected)", 2)
  end
  if opts == nil then opts = {} end
  check_options(opts, OPTIONS, "request", 2)
  local method = opts.method or "GET"
  if type(method) == "string" then method = METHOD_IDS[method:upper()] end
  if not METHODS[method] then
    bad_option("method", "\"GET\", \"POST\"... or a METHOD_* value expected")
  end
  method = METHOD_IDS[METHODS[method]]        -- 2.0 -> 2
  local headers = U.normalise_headers(opts.headers, "request")
  local body = opts.body or ""
  local timeout = opts.timeout or 30
  if not (timeout > 0) then bad_option("timeout", "positive number of seconds expected") end
  local total_timeout = opts.total_timeout
  if total_timeout ~= nil and not (total_timeout > 0) then
    bad_option("total_timeout", "positive number of seconds expected")
  end
  local max_redirects = opts.max_redirects or 8
  if max_redirects < 0 or max_redirects % 1 ~= 0 then
    bad_option("max_redirects", "non-negative integer expected")
  end
  local chunk_size = opts.chunk_size or 65536
  if chunk_size % 1 ~= 0 or chunk_size < 256 or chunk_size > 16 * 1024 * 1024 then
    bad_option("chunk_size", "integer from 256 to 16777216 expected")
  end
  chunk_size = math.floor(chunk_size)
  local limit = opts.body_size_limit or -1
  if limit % 1 ~= 0 or limit < -1 then
    bad_option("body_size_limit", "a byte count, or -1 for no limit")
  end
  if opts.proxy == false and opts.no_proxy ~= nil then
    bad_option("no_proxy", "no use with proxy = false")
  end
  -- Content codings: asked for and decoded, unless the caller asked for
  -- codings of its own (then the body comes as the server sent it).
  local decode = opts.accept_gzip ~= false and not U.has_header(headers, "Accept-Encoding")
  if decode then headers[#headers + 1] = "Accept-Encoding: gzip, deflate" end
  local sink, path = open_sink(opts)

  -- `timeout` bounds each operation (the connection, each wait for data);
  -- `total_timeout` the whole request, redirects included.
  local total_deadline = total_timeout and now() + total_timeout
  local function op_timeout()
    if not total_deadline then return timeout end
    return math.max(math.min(timeout, total_deadline - now()), 0.001)
  end
  local function over_total()
    return total_deadline and now() >= total_deadline
  end
  local function total_message()
    return ("the request did not complete within its total_timeout of %g s"):format(total_timeout)
  end
  -- A failure of the client as nil, message, code.
  local function client_failure(client, default)
    local msg, code = client:get_error()
    if code == "ERR_TIMEOUT" and over_total() then msg = total_message() end
    return nil, msg or default, code or "ERR_CONNECTION_ERROR"
  end

  local redirects = 0
  while true do
    local scheme, host, port, target = U.parse_url(url)
    if not scheme then
      -- Only the caller's URL gets here: a redirect's is checked below.
      return nil, ("invalid URL '%s' (%s)"):format(U.printable(url), host), "ERR_INVALID_PARAMETER"
    end
    if opts.tls_options and scheme == "https" and opts.tls_options:is_server() then
      return nil, "tls_options must be client TLSOptions", "ERR_INVALID_PARAMETER"
    end
    local proxy, perr = hop_proxy(scheme, host, opts, headers)
    if proxy == nil then return nil, perr, "ERR_INVALID_PARAMETER" end
    local client = HTTPClient.new()
    client:set_blocking_mode(true)
    client:set_read_chunk_size(chunk_size)
    client:_set_proxy(scheme, proxy)
    client:set_timeout(op_timeout())
    local tls_options = scheme == "https" and opts.tls_options or nil
    local ok, msg, code = client:connect_to_host(scheme .. "://" .. U.bracket(host), port, tls_options)
    if not ok then return nil, msg, code end
    if client:get_status() ~= S.STATUS_CONNECTED then
      return client_failure(client, "cannot connect to " .. host)
    end
    client:set_timeout(op_timeout())
    ok, msg, code = client:request(method, target, headers, body)
    if not ok then return nil, msg, code end
    if not client:has_response() then
      client:close()
      return client_failure(client, "no response")
    end
    local status = client:get_response_code()
    local dict = client:get_response_headers_as_dictionary()
    local location = dict["Location"]
    if U.REDIRECTS[status] and location and max_redirects > 0 then
      client:close()              -- a fresh connection follows the redirect
      if redirects == max_redirects then
        return nil, ("more than %d redirects (the last to %s)")
          :format(max_redirects, U.printable(location)), "ERR_UNAVAILABLE"
      end
      if over_total() then return nil, total_message(), "ERR_TIMEOUT" end
      redirects = redirects + 1
      -- The Location is the server's: a URL parse_url or request() would
      -- refuse (a bad host, a space or line break) is the server's fault,
      -- not an argument error.
      local next_url = U.resolve_location(url, location)
      local next_scheme, why = U.parse_url(next_url)
      if not next_scheme then
        return nil, ("the server redirected to an invalid URL '%s' (%s)")
          :format(U.printable(location), why), "ERR_INVALID_DATA"
      end
      headers = U.redirect_headers(headers, url, next_url)
      method, body, headers = U.redirect_method(status, method, body, headers)
      url = next_url
    elseif (sink or path) and (status < 200 or status > 299) and not opts.keep_error_body then
      -- A download that got an error page: the page is not the file asked
      -- for, so it goes nowhere (keep_error_body = true writes it).
      client:close()
      local where = path and ("'" .. U.printable(path) .. "'")
        or (opts.output and "the output file" or "the sink")
      return nil, ("HTTP %d from %s: the body was not written to %s "
        .. "(keep_error_body = true writes it)"):format(status, U.printable(url), where), status, dict
    else
      -- The body: decoded, then in memory, or streamed to the sink / a file.
      local parts, total, file, tmp = {}, 0, nil, nil
      local decoder = decode and U.decoder(dict["Content-Encoding"])
      local function abort(m, c)
        if file then file:close(); os.remove(tmp) end
        if decoder then decoder:close() end
        client:close()
        return nil, m, c
      end
      if path then
        tmp = path .. ".part"
        file, msg = io.open(tmp, "wb")
        if not file then
          client:close()
          return nil, ("cannot write '%s': %s"):format(tmp, msg), "ERR_FILE_CANT_WRITE"
        end
      end
      local function emit(data)
        if data == "" then return true end
        total = total + #data
        if limit >= 0 and total > limit then
          return nil, ("the body is larger than body_size_limit (%d bytes)"):format(limit),
            "ERR_INVALID_DATA"
        end
        if file then
          local w, werr = file:write(data)
          if not w then return nil, ("cannot write '%s': %s"):format(tmp, werr), "ERR_FILE_CANT_WRITE" end
        elseif sink then
          local sok, serr = pcall(sink, data)
          if not sok then return nil, "the sink raised an error: " .. tostring(serr), "FAILED" end
        else
          parts[#parts + 1] = data
        end
        return true
      end
      -- A decompression bomb costs at most chunk_size bytes per call, and
      -- stops at body_size_limit.
      local function deliver(raw)
        if not decoder then return emit(raw) end
        local more = true
        while more do
          local room = chunk_size
          if limit >= 0 then room = math.min(room, limit - total + 1) end
          local out
          out, more = decoder:feed(raw, room)
          if not out then return nil, more, "ERR_INVALID_DATA" end
          raw = ""
          local eok, em, ec = emit(out)
          if not eok then return nil, em, ec end
        end
        return true
      end
      while client:get_status() == S.STATUS_BODY do
        if over_total() then return abort(total_message(), "ERR_TIMEOUT") end
        client:set_timeout(op_timeout())
        local chunk = client:read_response_body_chunk()
        if #chunk > 0 then
          local dok, dm, dc = deliver(chunk)
          if not dok then return abort(dm, dc) end
        end
      end
      local st = client:get_status()
      if st ~= S.STATUS_CONNECTED and st ~= S.STATUS_DISCONNECTED then
        local _, m, c = client_failure(client, "the response body did not arrive whole")
        return abort(m, c)
      end
      if decoder then
        local fok, ferr = decoder:finish()
        if not fok then return abort(ferr, "ERR_INVALID_DATA") end
        decoder:close()
        decoder = nil
      end
      dict = client:get_response_headers_as_dictionary()   -- with any trailers
      client:close()
      if file then
        local cok, cerr = file:close()
        file = nil
        if not cok then
          os.remove(tmp)
          return nil, ("cannot write '%s': %s"):format(tmp, tostring(cerr)), "ERR_FILE_CANT_WRITE"
        end
        local rok, rerr = os.rename(tmp, path)
        if not rok then
          os.remove(tmp)
          return nil, ("cannot write '%s': %s"):format(path, rerr), "ERR_FILE_CANT_WRITE"
        end
      end
      if sink or path then return total, status, dict end
      return table.concat(parts), status, dict
    end
  end
end

return request
