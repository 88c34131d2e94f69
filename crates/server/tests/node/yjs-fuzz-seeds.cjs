// Writes the seed inputs of the yjs_message fuzz target (fuzz/corpus/yjs_message): real y-protocols
// frames made by yjs + y-protocols, length-prefixed (two bytes, big-endian). Usage, from this
// folder after `npm ci`: node yjs-fuzz-seeds.cjs ../../../../fuzz/corpus/yjs_message
const Y = require('yjs');
const sync = require('y-protocols/sync');
const aw = require('y-protocols/awareness');
const encoding = require('lib0/encoding');
const fs = require('fs');
const out = process.argv[2];
const frame = (write) => { const e = encoding.createEncoder(); write(e); return Buffer.from(encoding.toUint8Array(e)); };
const prefix = (frames) => Buffer.concat(frames.flatMap(f => { const h = Buffer.alloc(2); h.writeUInt16BE(f.length); return [h, f]; }));
const doc = new Y.Doc();
const step1 = frame(e => { encoding.writeVarUint(e, 0); sync.writeSyncStep1(e, doc); });
const updates = [];
doc.on('update', u => updates.push(frame(e => { encoding.writeVarUint(e, 0); sync.writeUpdate(e, u); })));
const elements = doc.getMap('elements');
doc.transact(() => { const el = new Y.Map(); el.set('type', 'rect'); el.set('x', 10); el.set('z', 'a0'); elements.set('e1', el); });
doc.transact(() => { const el = new Y.Map(); el.set('type', 'text'); el.set('text', 'héllo'); el.set('z', 'a1'); elements.set('e2', el); });
elements.get('e1').set('x', 42);
elements.delete('e2');
doc.getMap('meta').set('title', 'board');
const awareness = new aw.Awareness(doc);
awareness.setLocalState({ user: { name: 'Ann', color: '#f00' }, cursor: { x: 1, y: 2 } });
const awarenessFrame = frame(e => { encoding.writeVarUint(e, 1); encoding.writeVarUint8Array(e, aw.encodeAwarenessUpdate(awareness, [doc.clientID])); });
awareness.setLocalState(null);
const removal = frame(e => { encoding.writeVarUint(e, 1); encoding.writeVarUint8Array(e, aw.encodeAwarenessUpdate(awareness, [doc.clientID])); });
const query = frame(e => encoding.writeVarUint(e, 3));
const step2 = frame(e => { encoding.writeVarUint(e, 0); sync.writeSyncStep2(e, doc); });
const seeds = {
  'sync-then-updates': [step1, ...updates],
  'step2-whole-document': [step2, step1],
  'awareness-set-query-remove': [awarenessFrame, query, removal],
  'everything': [step1, updates[0], awarenessFrame, updates[1], updates[2], query, updates[3], removal, step2],
};
for (const [name, frames] of Object.entries(seeds)) fs.writeFileSync(`${out}/${name}`, prefix(frames));
awareness.destroy();
