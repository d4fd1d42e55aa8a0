"""A minimal agent loop against `steerlab serve` with the official OpenAI client.

    steerlab serve --asset runs/asa-smollm2-135m/asset --port 8000
    python docs/examples/agent_loop.py [BASE_URL] [QUESTION]      # or STEERLAB_BASE_URL=...

Tools run locally and safely (steerlab's stand-ins: a bounded calculator, a fixed search index and phrasebook; no
code is executed); replace `run_tool` with your own.
"""

import os
import sys

from openai import OpenAI

from steerlab.agent.stand_ins import StandIns
from steerlab.data.asa_data import load_asa_tools

default_url = os.environ.get("STEERLAB_BASE_URL", "http://127.0.0.1:8000/v1")
base_url = sys.argv[1] if len(sys.argv) > 1 else default_url
question = sys.argv[2] if len(sys.argv) > 2 else "What is 1,284 times 37?"
client = OpenAI(base_url=base_url, api_key="unused")
model = client.models.list().data[0].id  # the model the server serves (another name is 404)
# calculator, python_interpreter, web_search, translator: the tools the shipped assets were fitted with
tools = load_asa_tools()
run_tool = StandIns.shipped().run  # run_tool(name, arguments_json) -> the tool's reply as text
model = client.models.list().data[0].id  # the model the server serves

messages = [{"role": "user", "content": question}]
for _ in range(3):  # at most three replies
    r = client.chat.completions.create(model=model, tools=tools, messages=messages, max_tokens=200)
    msg = r.choices[0].message
    print("gate:", (r.model_extra or {}).get("steerlab"))  # what ASA decided for this reply
    if not msg.tool_calls:
        print("answer:", msg.content)
        break
    messages.append(
        {"role": "assistant", "content": msg.content, "tool_calls": [c.model_dump() for c in msg.tool_calls]}
    )
    for call in msg.tool_calls:
        result = run_tool(call.function.name, call.function.arguments)
        print(f"tool {call.function.name}({call.function.arguments}) -> {result}")
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
else:
    print("no answer after 3 replies")
