-- wrk script: POST an Anthropic message.
-- Usage: wrk -s bench/lua/anthropic_messages.lua URL -- MODEL STREAM KEY
--   MODEL  the model name to put in the body
--   STREAM "1" for a stream, "0" otherwise
--   KEY    sent as "x-api-key: KEY" ("-" sends no key)
function init(args)
   local model = args[1] or "claude-haiku-4-5"
   local stream = args[2] == "1"
   local key = args[3] or "-"
   local body = '{"model":"' .. model .. '","max_tokens":16,'
      .. '"messages":[{"role":"user","content":"Say hello to the benchmark."}]'
   if stream then
      body = body .. ',"stream":true'
   end
   wrk.method = "POST"
   wrk.path = "/v1/messages"
   wrk.body = body .. "}"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["anthropic-version"] = "2023-06-01"
   if key ~= "-" then
      wrk.headers["x-api-key"] = key
   end
end
