// openai-node's runTools agent loop against the server at argv[2]: one function tool, the
// model picks (tool_choice auto). Prints {content, calls, messages} as one JSON line.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "x", maxRetries: 0 });
let calls = 0;
const runner = client.beta.chat.completions.runTools(
  {
    model: "gpt-4o",
    messages: [{ role: "user", content: "What is the weather in Paris?" }],
    tools: [
      {
        type: "function",
        function: {
          name: "get_weather",
          description: "The weather in a city",
          parameters: {
            type: "object",
            properties: { city: { type: "string" } },
            required: ["city"],
          },
          function: (args) => {
            calls += 1;
            return JSON.stringify({ city: args.city, sky: "clear" });
          },
          parse: JSON.parse,
        },
      },
    ],
  },
  { maxChatCompletions: 5 },
);
const content = await runner.finalContent();
console.log(JSON.stringify({ content, calls, messages: runner.messages.length }));
