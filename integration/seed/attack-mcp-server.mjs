// An MCP server on the official MCP TypeScript SDK (McpServer, Streamable
// HTTP, stateless, JSON answers) for the attack tests: a public and a
// secret resource, a public and an admin tool. Usage:
//
//   PORT=... node attack-mcp-server.mjs
//
// It prints one line, {"listening": port}, once it accepts requests.
import http from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

function newServer() {
  const s = new McpServer({ name: "attack-ts", version: "1.0.0" });
  for (const uri of ["demo://public/readme", "demo://secret/plans", "https://docs.example.com/secret/plans"]) {
    s.registerResource(uri, uri, {}, async (u) => ({
      contents: [{ uri: u.href, text: "contents of " + uri }],
    }));
  }
  for (const name of ["whoami", "delete_item"]) {
    s.registerTool(name, { description: name }, async () => ({
      content: [{ type: "text", text: "ran " + name }],
    }));
  }
  return s;
}

const server = http.createServer(async (req, res) => {
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  const s = newServer();
  res.on("close", () => {
    transport.close();
    s.close();
  });
  await s.connect(transport);
  await transport.handleRequest(req, res);
});
server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: server.address().port }));
});
