// The console's HTML body (docs/console.md). Static markup only: every value from the API is put
// into the DOM by the script with textContent, never parsed as HTML.
export const CONSOLE_BODY = String.raw`
<a class="skip" href="#workspace">Skip to the console</a>
<header class="top">
  <h1>VMCP Gateway console</h1>
  <form id="auth-form" class="auth" novalidate>
    <p id="auth-hint" class="hint">Enter the gateway's admin token (<code>VMCP_ADMIN_TOKEN</code>). It stays in this tab only.</p>
    <label for="token">Admin token</label>
    <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" aria-describedby="auth-hint">
    <button type="submit" id="connect">Connect</button>
  </form>
  <div id="session-tools" class="auth" hidden>
    <p id="stream-state" class="stream-state" role="status" aria-live="polite">Not connected</p>
    <button type="button" id="sign-out">Forget token</button>
  </div>
</header>
<div id="alert" class="alert" role="alert" hidden></div>
<main id="workspace" class="grid" tabindex="-1" hidden>
  <section class="card vehicles" aria-labelledby="vehicles-h">
    <div class="card-head">
      <h2 id="vehicles-h">Vehicles</h2>
      <button type="button" id="vehicles-refresh" aria-label="Refresh vehicle list">Refresh</button>
    </div>
    <div class="tools">
      <label class="check"><input type="checkbox" id="online-only"> Online only</label>
      <label for="page-size">Per page</label>
      <select id="page-size">
        <option value="5">5</option>
        <option value="25" selected>25</option>
        <option value="50">50</option>
        <option value="100">100</option>
      </select>
    </div>
    <div id="vehicles-error" class="error" role="alert" hidden></div>
    <div class="scroll">
      <table class="data" id="vehicles">
        <caption class="sr-only">Vehicles seen by the gateway, in id order</caption>
        <thead><tr><th scope="col">Vehicle</th><th scope="col">Status</th><th scope="col" class="num">Last seq</th></tr></thead>
        <tbody id="vehicles-body"></tbody>
      </table>
      <p id="vehicles-empty" class="muted" hidden>No vehicles on this page.</p>
    </div>
    <nav class="pager" aria-label="Vehicle pages">
      <button type="button" id="page-prev" disabled>Previous</button>
      <span id="page-label" aria-live="polite">Page 1</span>
      <button type="button" id="page-next" disabled>Next</button>
    </nav>
    <form id="open-form" class="open" novalidate>
      <label for="open-id">Open vehicle by id</label>
      <div class="row">
        <input id="open-id" type="text" spellcheck="false" autocomplete="off" aria-describedby="open-error">
        <button type="submit">Open</button>
      </div>
      <p id="open-error" class="error" role="alert" hidden></p>
    </form>
  </section>

  <section class="card vehicle" aria-labelledby="vehicle-h">
    <div class="card-head">
      <h2 id="vehicle-h">Vehicle</h2>
      <button type="button" id="vehicle-refresh" aria-label="Refresh vehicle" hidden>Refresh</button>
    </div>
    <p id="vehicle-none" class="muted">Select a vehicle in the list, or open one by id.</p>
    <div id="vehicle-panel" hidden>
      <div id="vehicle-error" class="error" role="alert" hidden></div>
      <dl id="vehicle-facts" class="facts"></dl>
      <div class="split">
        <div>
          <h3 id="latest-h">Latest data</h3>
          <table class="data kv" aria-labelledby="latest-h">
            <thead><tr><th scope="col">Key</th><th scope="col">Value</th></tr></thead>
            <tbody id="latest-body"></tbody>
          </table>
        </div>
        <div class="actions">
          <form id="command-form" novalidate aria-labelledby="command-h">
            <h3 id="command-h">Send command</h3>
            <label for="cmd-name">Name</label>
            <input id="cmd-name" type="text" spellcheck="false" autocomplete="off" placeholder="door.lock">
            <label for="cmd-params">Params (JSON, optional)</label>
            <textarea id="cmd-params" rows="3" spellcheck="false" placeholder='{"all": true}'></textarea>
            <label for="cmd-ttl">TTL in seconds (optional, default 86400)</label>
            <input id="cmd-ttl" type="number" inputmode="numeric" min="1" step="1">
            <button type="submit" id="cmd-send">Send command</button>
            <p id="cmd-error" class="error" role="alert" hidden></p>
            <p id="cmd-status" class="ok" role="status" aria-live="polite"></p>
          </form>
          <form id="sensor-form" novalidate aria-labelledby="sensor-h">
            <h3 id="sensor-h">Read sensor</h3>
            <div class="row">
              <div>
                <label for="sensor-channel">Channel (0–255)</label>
                <input id="sensor-channel" type="number" inputmode="numeric" min="0" max="255" step="1">
              </div>
              <div>
                <label for="sensor-timeout">Timeout (ms)</label>
                <input id="sensor-timeout" type="number" inputmode="numeric" min="1" step="1" value="5000">
              </div>
            </div>
            <button type="submit" id="sensor-read">Read sensor</button>
            <p id="sensor-error" class="error" role="alert" hidden></p>
            <p id="sensor-result" class="ok" role="status" aria-live="polite"></p>
          </form>
        </div>
      </div>
      <h3 id="commands-h">Commands</h3>
      <div class="scroll short">
        <table class="data" id="commands" aria-labelledby="commands-h">
          <thead><tr><th scope="col">Name</th><th scope="col" class="num">Seq</th><th scope="col">Status</th><th scope="col">Result</th><th scope="col">Sent</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
          <tbody id="commands-body"></tbody>
        </table>
        <p id="commands-empty" class="muted">No commands sent to this vehicle from this console yet.</p>
      </div>
      <h3 id="uplink-h">Recent uplink (last 20)</h3>
      <div class="scroll short">
        <table class="data" id="uplink" aria-labelledby="uplink-h">
          <thead><tr><th scope="col" class="num">Seq</th><th scope="col">Kind</th><th scope="col">Time</th><th scope="col">Data</th></tr></thead>
          <tbody id="uplink-body"></tbody>
        </table>
        <p id="uplink-empty" class="muted">No uplink records.</p>
      </div>
    </div>
  </section>

  <section class="card log" aria-labelledby="log-h">
    <div class="card-head">
      <h2 id="log-h">Live events</h2>
      <button type="button" id="log-clear">Clear</button>
    </div>
    <div class="tools">
      <label class="check"><input type="checkbox" id="log-selected"> Selected vehicle only</label>
      <span id="log-count" class="muted">0 events</span>
    </div>
    <ol id="log" class="log-list" aria-label="Events, newest first"></ol>
  </section>
</main>
`;
