// Verifies webhooks the way an app's server does, with the real `pusher` server SDK 5:
// `pusher.webhook({headers, rawBody}).isValid()`, then its parsed events.
// Reads a JSON array of {headers, body} on stdin; prints one JSON line per webhook:
// {valid, events} (events only when valid).
const Pusher = require("pusher");

const [appId, key, secret] = process.argv.slice(2);
const pusher = new Pusher({ appId, key, secret });

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  for (const { headers, body } of JSON.parse(input)) {
    const webhook = pusher.webhook({ headers, rawBody: body });
    const valid = webhook.isValid();
    const line = { valid };
    if (valid) {
      line.events = webhook.getEvents();
      line.time = webhook.getTime().getTime();
    }
    console.log(JSON.stringify(line));
  }
});
