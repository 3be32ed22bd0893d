// The console's stylesheet: one inline <style> element (its hash is allowed by the page's CSP).
export const CONSOLE_STYLE = String.raw`
:root {
  --bg: #f3f5f8; --card: #ffffff; --text: #1b1f24; --muted: #57606a; --line: #d0d7de;
  --accent: #0a58ca; --accent-text: #ffffff; --focus: #0a58ca;
  --on-bg: #dafbe1; --on-fg: #116329; --off-bg: #eaeef2; --off-fg: #424a53;
  --warn-bg: #fff8c5; --warn-fg: #6b4400; --info-bg: #ddf4ff; --info-fg: #0550ae;
  --bad-bg: #ffebe9; --bad-fg: #a40e26;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
  font-size: 14px; line-height: 1.4; color: var(--text); background: var(--bg);
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 0; }
h3 { font-size: 0.95rem; margin: 1rem 0 0.4rem; }
code, .mono, .log-list, td.json { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.skip { position: absolute; left: -999px; top: 0; background: var(--card); padding: 0.5rem; }
.skip:focus { left: 0.5rem; z-index: 10; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 1px; }
.top { display: flex; flex-wrap: wrap; align-items: center; gap: 0.75rem 1.5rem; padding: 0.7rem 1rem;
  background: #24292f; color: #ffffff; }
.top code { color: #ffffff; }
.auth { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem; margin-left: auto; }
.auth .hint { margin: 0; color: #d0d7de; font-size: 0.85rem; flex-basis: 100%; text-align: right; }
.auth input { width: 18rem; }
.stream-state { margin: 0; padding: 0.15rem 0.6rem; border-radius: 1rem; background: #57606a; font-size: 0.85rem; }
.stream-state.live { background: #1a7f37; }
.stream-state.down { background: #a40e26; }
.alert { margin: 0.75rem 1rem 0; padding: 0.6rem 0.9rem; border: 1px solid var(--bad-fg); border-radius: 6px;
  background: var(--bad-bg); color: var(--bad-fg); font-weight: 600; }
.grid { display: grid; gap: 0.75rem; padding: 0.75rem 1rem 1rem;
  grid-template-columns: minmax(250px, 19rem) minmax(0, 1fr) minmax(280px, 24rem); align-items: start; }
.grid:focus { outline: none; }
@media (max-width: 1100px) { .grid { grid-template-columns: minmax(250px, 19rem) minmax(0, 1fr); } .card.log { grid-column: 1 / -1; } }
@media (max-width: 720px) { .grid { grid-template-columns: minmax(0, 1fr); } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.75rem; min-width: 0; }
.card-head { display: flex; align-items: center; justify-content: space-between; gap: 0.5rem; margin-bottom: 0.5rem; }
.tools { display: flex; flex-wrap: wrap; align-items: center; gap: 0.4rem 0.75rem; margin-bottom: 0.5rem; }
.check { display: inline-flex; align-items: center; gap: 0.3rem; }
label { font-weight: 600; font-size: 0.85rem; }
form label { display: block; margin: 0.45rem 0 0.15rem; }
.check, .tools label { display: inline-flex; margin: 0; }
input, select, textarea, button { font: inherit; color: inherit; }
input[type="text"], input[type="password"], input[type="number"], textarea, select {
  padding: 0.3rem 0.45rem; border: 1px solid #8c959f; border-radius: 5px; background: #ffffff; color: var(--text); }
form input[type="text"], form input[type="number"], form textarea { width: 100%; }
textarea { resize: vertical; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.85rem; }
[aria-invalid="true"] { border-color: var(--bad-fg); background: var(--bad-bg); }
button { padding: 0.3rem 0.75rem; border: 1px solid #8c959f; border-radius: 5px; background: #f6f8fa; cursor: pointer; }
button:hover:not(:disabled) { background: #eaeef2; }
button:disabled { cursor: default; opacity: 0.55; }
button[type="submit"] { background: var(--accent); border-color: var(--accent); color: var(--accent-text); }
button[type="submit"]:hover:not(:disabled) { background: #084298; }
form button[type="submit"] { margin-top: 0.55rem; }
.top button { background: transparent; border-color: #afb8c1; color: #ffffff; }
.top button:hover:not(:disabled) { background: #32383f; }
.top button[type="submit"] { background: var(--accent); border-color: #6ea8fe; }
.top button[type="submit"]:hover:not(:disabled) { background: #084298; }
.row { display: flex; gap: 0.5rem; align-items: end; }
.row > div { flex: 1; }
.open { margin-top: 0.75rem; border-top: 1px solid var(--line); padding-top: 0.4rem; }
.open .row button { margin-top: 0; }
.scroll { overflow: auto; max-height: calc(100vh - 19rem); }
.scroll.short { max-height: 16rem; }
table.data { width: 100%; border-collapse: collapse; font-size: 0.875rem; }
table.data th, table.data td { text-align: left; padding: 0.3rem 0.45rem; border-bottom: 1px solid #e6e9ed; vertical-align: top; }
table.data thead th { position: sticky; top: 0; background: #f6f8fa; font-size: 0.8rem; color: var(--muted); z-index: 1; }
table.data td { overflow-wrap: anywhere; }
table.data .num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td:first-child { font-weight: 600; white-space: nowrap; }
#vehicles tbody tr.selected { background: var(--info-bg); }
.vid { border: 0; background: none; padding: 0; color: var(--accent); text-decoration: underline; cursor: pointer;
  font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; text-align: left; overflow-wrap: anywhere; }
.vid:hover:not(:disabled) { background: none; color: #084298; }
.badge { display: inline-block; padding: 0 0.5rem; border-radius: 1rem; font-size: 0.78rem; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; }
.badge.online, .badge.succeeded, .badge.telemetry { background: var(--on-bg); color: var(--on-fg); }
.badge.offline, .badge.expired, .badge.cancelled { background: var(--off-bg); color: var(--off-fg); }
.badge.pending, .badge.event { background: var(--warn-bg); color: var(--warn-fg); }
.badge.delivered { background: var(--info-bg); color: var(--info-fg); }
.badge.failed, .badge.rejected, .badge.unsupported { background: var(--bad-bg); color: var(--bad-fg); }
.pager { display: flex; align-items: center; justify-content: space-between; gap: 0.5rem; margin-top: 0.5rem; }
.muted { color: var(--muted); }
p.muted { margin: 0.4rem 0; }
.error { margin: 0.4rem 0 0; color: var(--bad-fg); font-weight: 600; }
div.error { padding: 0.4rem 0.6rem; background: var(--bad-bg); border-radius: 5px; margin-bottom: 0.5rem; }
.ok { margin: 0.4rem 0 0; color: var(--on-fg); overflow-wrap: anywhere; }
.ok:empty { display: none; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(9.5rem, 1fr)); gap: 0.4rem 0.75rem; margin: 0; }
.facts div { min-width: 0; }
.facts dt { font-size: 0.78rem; color: var(--muted); }
.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.split { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; }
@media (max-width: 1300px) { .split { grid-template-columns: minmax(0, 1fr); } }
.actions form + form { margin-top: 0.75rem; border-top: 1px solid var(--line); }
.log-list { list-style: none; margin: 0; padding: 0; max-height: calc(100vh - 10rem); overflow: auto; font-size: 0.8rem; }
.log-list li { padding: 0.25rem 0.2rem; border-bottom: 1px solid #eef0f3; overflow-wrap: anywhere; }
.log-list time { color: var(--muted); margin-right: 0.35rem; }
.log-list .kind { display: inline-block; min-width: 4.6rem; font-weight: 700; }
.log-list .kind.uplink { color: var(--on-fg); }
.log-list .kind.presence { color: var(--info-fg); }
.log-list .kind.command { color: var(--warn-fg); }
.log-list .kind.stream { color: var(--bad-fg); }
.log-list .who { font-weight: 600; margin-right: 0.35rem; }
`;
