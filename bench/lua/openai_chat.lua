-- wrk script: POST an OpenAI chat completion.
-- Usage: wrk -s bench/lua/openai_chat.lua URL -- MODEL STREAM KEY
--   MODEL  the model name to put in the body
--   STREAM "1" for a stream (with stream_options.include_usage), "0" otherwise
--   KEY    sent as "Authorization: Bearer KEY" ("-" sends no key)
function init(args)
   local model = args[1] or "gpt-4o-mini"
   local stream = args[2] == "1"
   local key = args[3] or "-"
   local body = '{"model":"' .. model .. '","max_tokens":16,'
      .. '"messages":[{"role":"user","content":"Say hello to the benchmark."}]'
   if stream then
      body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
   end
   wrk.method = "POST"
   wrk.path = "/v1/chat/completions"
   wrk.body = body .. "}"
   wrk.headers["Content-Type"] = "application/json"
   if key ~= "-" then
      wrk.headers["Authorization"] = "Bearer " .. key
   end
end
