// The web console (GET /console, docs/console.md) driven in a real browser: Debian's Chromium through
// playwright-core against a real gateway with scripted vehicles. Skipped only when /usr/bin/chromium
// is missing outside CI; in CI (.ci/run installs it) it always runs.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConsolePage, consoleScript } from '../../src/api/console.js';
import {
  Cmd,
  CommandResult,
  encodeCommandAck,
  encodeEvent,
  encodeSensorData,
  encodeTelemetry,
  type CommandMessage,
  type SensorReadMessage,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { ADMIN_TOKEN, startGateway, type TestGateway } from '../helpers/gateway.js';
import type { TestVehicle } from '../helpers/vehicle.js';

const CHROMIUM = '/usr/bin/chromium';
const IN_CI = !['', '0', 'false'].includes((process.env.CI ?? '').trim().toLowerCase());
const RUN_BROWSER = existsSync(CHROMIUM) || IN_CI;
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Every wait in the browser is bounded by this. */
const WAIT_MS = 10_000;
const SCREENSHOT_PATH = join(tmpdir(), 'vmcp-console-screenshot.png');

describe('GET /console (no browser)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(async () => {
    await gw.stop();
  });

  it('answers a self-contained HTML page without a token, with a CSP allowing only its inline code', async () => {
    const res = await fetch(`${gw.httpUrl}/console`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html; charset=utf-8/);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/]+={0,2}'/);
    expect(csp).toContain("connect-src 'self'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await res.text();
    expect(html).toBe(buildConsolePage().html);
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<title>VMCP Gateway console</title>');
    // No external assets: nothing loads from another origin or from a path of the gateway.
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*(?!["']?(?:data:|#))/i);
    expect(html).not.toMatch(/https?:\/\//);
    // Data goes into the DOM as text only.
    expect(html).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
    // Every input has a label.
    for (const m of html.matchAll(/<(?:input|textarea|select)[^>]*\bid="([^"]+)"/g)) {
      expect(html, `label for #${m[1]}`).toMatch(
        new RegExp(`<label[^>]*for="${m[1]}"|<label[^>]*>\\s*<input[^>]*id="${m[1]}"`),
      );
    }
    // The API itself still needs the token.
    expect((await fetch(`${gw.httpUrl}/api/v1/vehicles`)).status).toBe(401);
  });

  it('inlines a script that parses, with its configuration filled in', () => {
    const script = consoleScript();
    expect(script).not.toContain('__CONFIG__');
    expect(() => new Function(script)).not.toThrow();
  });
});

describe.skipIf(!RUN_BROWSER)('web console in Chromium', () => {
  let gw: TestGateway;
  let ctx: BrowserContext;
  let page: Page;
  let userDir: string;
  let v1: TestVehicle;
  const pageErrors: string[] = [];
  const commandPosts: string[] = [];

  beforeAll(async () => {
    gw = await startGateway();
    userDir = mkdtempSync(join(tmpdir(), 'vmcp-console-chromium-'));
    ctx = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1366, height: 860 },
      timeout: 20_000,
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(WAIT_MS);
    page.setDefaultNavigationTimeout(WAIT_MS);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      // Failed requests (401, 404) are logged as errors by the browser; CSP violations must not happen.
      if (/Content Security Policy|Refused to/i.test(msg.text())) pageErrors.push(msg.text());
    });
    page.on('request', (req) => {
      if (req.method() === 'POST' && req.url().endsWith('/commands')) commandPosts.push(req.url());
    });
    v1 = await gw.connected('VIN-CON-1');
  });

  afterAll(async () => {
    v1?.close();
    await ctx?.close();
    if (userDir !== undefined) rmSync(userDir, { recursive: true, force: true });
    await gw?.stop();
  });

  const vehicleRow = (id: string): Locator =>
    page
      .locator('#vehicles-body tr')
      .filter({ has: page.getByRole('button', { name: id, exact: true }) });
  const badgeOf = (id: string, status: 'online' | 'offline'): Locator =>
    vehicleRow(id).locator('.badge', { hasText: new RegExp(`^${status}$`) });
  const logLine = (text: string | RegExp): Locator => page.locator('#log li', { hasText: text });

  async function signIn(token: string): Promise<void> {
    await page.getByLabel('Admin token').fill(token);
    await page.getByRole('button', { name: 'Connect' }).click();
  }

  async function select(id: string): Promise<void> {
    await page.getByRole('button', { name: id, exact: true }).click();
    await page.getByRole('heading', { name: `Vehicle ${id}` }).waitFor();
  }

  it('shows the unauthorized error for a wrong token and keeps the console closed', async () => {
    await page.goto(`${gw.httpUrl}/console`);
    // A token no header can carry is refused in the page as unauthorized, not as a network error.
    await signIn('令牌');
    await page
      .getByRole('alert')
      .filter({ hasText: 'unauthorized: a bearer token has only printable ASCII' })
      .waitFor();
    await signIn('not-the-admin-token');
    const alert = page.getByRole('alert').filter({ hasText: 'unauthorized' });
    await alert.waitFor();
    expect(await alert.textContent()).toContain('unauthorized: missing or wrong bearer token');
    expect(await page.locator('#workspace').isHidden()).toBe(true);
    expect(await page.evaluate('sessionStorage.getItem("vmcp.console.adminToken")')).toBeNull();
  });

  it('signs in with the admin token and shows vehicles with live presence badges', async () => {
    await signIn(ADMIN_TOKEN);
    await badgeOf('VIN-CON-1', 'online').waitFor();
    expect(await page.locator('#alert').isHidden()).toBe(true);
    await page.locator('#stream-state', { hasText: 'Live' }).waitFor();
    // A vehicle connecting while the page is open appears online, then goes offline.
    const v2 = await gw.connected('VIN-CON-2');
    await badgeOf('VIN-CON-2', 'online').waitFor();
    await logLine(/presence\s*VIN-CON-2\s*online/).waitFor();
    v2.close();
    await badgeOf('VIN-CON-2', 'offline').waitFor();
    // The token is kept for the tab: a reload signs in again without asking.
    await page.reload();
    await badgeOf('VIN-CON-1', 'online').waitFor();
    expect(await page.locator('#auth-form').isHidden()).toBe(true);
    await page.locator('#stream-state', { hasText: 'Live' }).waitFor();
  });

  it('shows TELEMETRY in the event log and in the vehicle panel', async () => {
    await select('VIN-CON-1');
    await page.locator('#vehicle-facts').getByText('online').waitFor();
    v1.send(
      Cmd.TELEMETRY,
      encodeTelemetry({
        seq: 1,
        timestamp: Date.now(),
        speed: 653,
        latitude: 312_304_000,
        longitude: 1_214_737_000,
      }),
    );
    expect((await v1.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).seq).toBe(1);
    await logLine(/uplink\s*VIN-CON-1\s*seq 1 telemetry: .*speedKmh=65\.3/).waitFor();
    await page.locator('#latest-body tr', { hasText: 'speedKmh' }).getByText('65.3').waitFor();
    await page.locator('#latest-body tr', { hasText: 'latitude' }).getByText('31.2304').waitFor();
    await page.locator('#uplink-body tr', { hasText: 'speedKmh=65.3' }).waitFor();
    await vehicleRow('VIN-CON-1').locator('td.num', { hasText: /^1$/ }).waitFor();
    // A reload of the panel reads the same record back from the API.
    await page.getByRole('button', { name: 'Refresh vehicle', exact: true }).click();
    await page.locator('#uplink-body tr', { hasText: 'speedKmh=65.3' }).waitFor();
    const facts = page.locator('#vehicle-facts div', { hasText: 'Last uplink seq' });
    expect(await facts.locator('dd').textContent()).toBe('1');
  });

  it('sends a command from the form; the status follows the vehicle to succeeded', async () => {
    await page.getByLabel('Name').fill('door.lock');
    await page.getByLabel('Params (JSON, optional)').fill('{"all": true}');
    await page.getByLabel('TTL in seconds (optional, default 86400)').fill('60');
    const before = Date.now();
    await page.getByRole('button', { name: 'Send command' }).click();
    const cmd = await v1.nextDecoded<CommandMessage>(Cmd.COMMAND, WAIT_MS);
    expect(cmd).toMatchObject({ seq: 1, name: 'door.lock', params: '{"all":true}' });
    expect(cmd.expiresAt).toBeGreaterThanOrEqual(before + 59_000);
    expect(cmd.expiresAt).toBeLessThanOrEqual(Date.now() + 61_000);
    const row = page.locator('#commands-body tr', { hasText: 'door.lock' });
    await row.locator('.badge', { hasText: /^delivered$/ }).waitFor();
    v1.send(
      Cmd.COMMAND_ACK,
      encodeCommandAck({
        seq: cmd.seq,
        result: CommandResult.SUCCEEDED,
        resultPayload: new TextEncoder().encode('{"locked":true}'),
      }),
    );
    await row.locator('.badge', { hasText: /^succeeded$/ }).waitFor();
    await row.getByText('{"locked":true}').waitFor();
    await logLine(/command\s*VIN-CON-1\s*door\.lock seq 1 → succeeded/).waitFor();
    expect(await row.getByRole('button', { name: /Cancel/ }).count()).toBe(0);
    expect((await gw.api('GET', `/api/v1/commands/${cmd.commandId}`)).body).toMatchObject({
      status: 'succeeded',
    });
  });

  it('refuses params that are not JSON before any request', async () => {
    const posts = commandPosts.length;
    await page.getByLabel('Name').fill('door.unlock');
    await page.getByLabel('Params (JSON, optional)').fill('{oops');
    await page.getByRole('button', { name: 'Send command' }).click();
    await page.locator('#cmd-error', { hasText: 'Params must be valid JSON' }).waitFor();
    expect(await page.locator('#cmd-params').getAttribute('aria-invalid')).toBe('true');
    await page.getByLabel('TTL in seconds (optional, default 86400)').fill('0');
    await page.getByLabel('Params (JSON, optional)').fill('');
    await page.getByRole('button', { name: 'Send command' }).click();
    await page.locator('#cmd-error', { hasText: 'TTL must be a whole number' }).waitFor();
    expect(commandPosts.length).toBe(posts);
    await page.getByLabel('TTL in seconds (optional, default 86400)').fill('');
  });

  it('sends params as typed: integers past 2^53, 1.50 and 1e400 reach the vehicle unchanged', async () => {
    await page.getByLabel('Name').fill('charge.limit');
    await page
      .getByLabel('Params (JSON, optional)')
      .fill('{"big": 12345678901234567890, "price": 1.50, "huge": 1e400, "id": 9007199254740993}');
    await page.getByRole('button', { name: 'Send command' }).click();
    const cmd = await v1.nextDecoded<CommandMessage>(Cmd.COMMAND, WAIT_MS);
    expect(cmd.params).toBe(
      '{"big":12345678901234567890,"price":1.50,"huge":1e400,"id":9007199254740993}',
    );
    v1.send(Cmd.COMMAND_ACK, encodeCommandAck({ seq: cmd.seq, result: CommandResult.SUCCEEDED }));
    const row = page.locator('#commands-body tr', { hasText: 'charge.limit' });
    await row.locator('.badge', { hasText: /^succeeded$/ }).waitFor();
    await page.getByLabel('Params (JSON, optional)').fill('');
  });

  it('says why the valid ids "." and ".." cannot be used from a browser, and sends nothing', async () => {
    const posts = commandPosts.length;
    for (const id of ['.', '..']) {
      await page.getByLabel('Open vehicle by id').fill(id);
      await page.getByRole('button', { name: 'Open', exact: true }).click();
      await page
        .locator('#vehicle-error', { hasText: `cannot put the vehicle id "${id}" in a URL path` })
        .waitFor();
      await page.getByLabel('Name').fill('door.lock');
      await page.getByRole('button', { name: 'Send command' }).click();
      await page.locator('#cmd-error', { hasText: 'dot segment' }).waitFor();
      await page.getByLabel('Channel (0–255)').fill('1');
      await page.getByRole('button', { name: 'Read sensor' }).click();
      await page.locator('#sensor-error', { hasText: 'dot segment' }).waitFor();
    }
    expect(commandPosts.length).toBe(posts);
  });

  it('cancels a pending command of a vehicle never seen, and shows API errors', async () => {
    await page.getByLabel('Open vehicle by id').fill('VIN-CON-NEVER');
    await page.getByRole('button', { name: 'Open', exact: true }).click();
    await page.locator('#vehicle-error', { hasText: 'vehicle_not_found' }).waitFor();
    await page.getByLabel('Name').fill('horn.honk');
    await page.getByRole('button', { name: 'Send command' }).click();
    const row = page.locator('#commands-body tr', { hasText: 'horn.honk' });
    await row.locator('.badge', { hasText: /^pending$/ }).waitFor();
    await row.getByRole('button', { name: /Cancel command horn\.honk/ }).click();
    await row.locator('.badge', { hasText: /^cancelled$/ }).waitFor();
    expect(await row.getByRole('button').count()).toBe(0);
    // An invalid vehicle id is refused in the page.
    await page.getByLabel('Open vehicle by id').fill('bad id!');
    await page.getByRole('button', { name: 'Open', exact: true }).click();
    await page.locator('#open-error', { hasText: 'A vehicle id is' }).waitFor();
    // A sensor read of a vehicle never seen shows the API's error.
    await page.getByLabel('Channel (0–255)').fill('1');
    await page.getByRole('button', { name: 'Read sensor' }).click();
    await page.locator('#sensor-error', { hasText: 'vehicle_not_found' }).waitFor();
  });

  it('reads a sensor through the form', async () => {
    await select('VIN-CON-1');
    await page.getByLabel('Channel (0–255)').fill('7');
    await page.getByLabel('Timeout (ms)').fill('5000');
    await page.getByRole('button', { name: 'Read sensor' }).click();
    const read = await v1.nextDecoded<SensorReadMessage>(Cmd.SENSOR_READ, WAIT_MS);
    expect(read.channel).toBe(7);
    v1.send(
      Cmd.SENSOR_DATA,
      encodeSensorData({ channel: 7, tag: read.tag, status: 0, value: Uint8Array.of(0xbe, 0xef) }),
    );
    await page.locator('#sensor-result', { hasText: 'Channel 7: 0xbeef — 2 bytes' }).waitFor();
    await page.getByLabel('Channel (0–255)').fill('9');
    await page.getByRole('button', { name: 'Read sensor' }).click();
    const r2 = await v1.nextDecoded<SensorReadMessage>(Cmd.SENSOR_READ, WAIT_MS);
    v1.send(
      Cmd.SENSOR_DATA,
      encodeSensorData({ channel: 9, tag: r2.tag, status: 1, value: new Uint8Array(0) }),
    );
    await page.locator('#sensor-error', { hasText: 'no_such_channel' }).waitFor();
    await page.getByLabel('Channel (0–255)').fill('256');
    await page.getByRole('button', { name: 'Read sensor' }).click();
    await page.locator('#sensor-error', { hasText: 'Channel must be a whole number' }).waitFor();
  });

  it('puts vehicle data into the page as text, never as markup', async () => {
    const detail = '<img src=x id=xss onerror="document.title=1"><b>bold</b>';
    v1.send(Cmd.EVENT, encodeEvent({ seq: 2, timestamp: Date.now(), eventCode: 7, detail }));
    expect((await v1.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).seq).toBe(2);
    await logLine('<img src=x id=xss').waitFor();
    await page.locator('#uplink-body tr', { hasText: '<b>bold</b>' }).waitFor();
    expect(await page.locator('#xss').count()).toBe(0);
    expect(await page.locator('img, b').count()).toBe(0);
    expect(await page.title()).toBe('VMCP Gateway console');
  });

  it('pages the vehicle list with next, and filters online vehicles', async () => {
    for (let i = 1; i <= 4; i++) (await gw.connected(`VIN-CON-P${i}`)).close();
    await page.getByLabel('Per page').selectOption('5');
    await page.locator('#page-next:not([disabled])').waitFor();
    await vehicleRow('VIN-CON-P3').waitFor();
    expect(await page.locator('#vehicles-body tr').count()).toBe(5);
    await page.getByRole('button', { name: 'Next' }).click();
    await page.locator('#page-label', { hasText: 'Page 2' }).waitFor();
    await badgeOf('VIN-CON-P4', 'offline').waitFor();
    expect(await page.locator('#vehicles-body tr').count()).toBe(1);
    expect(await page.getByRole('button', { name: 'Next' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Previous' }).click();
    await vehicleRow('VIN-CON-1').waitFor();
    await page.getByLabel('Online only').check();
    await vehicleRow('VIN-CON-2').waitFor({ state: 'detached' });
    await badgeOf('VIN-CON-1', 'online').waitFor();
    expect(await page.locator('#vehicles-body tr').count()).toBe(1);
    // With "Online only", a vehicle that connects appears and one that disconnects leaves the list.
    const v3 = await gw.connected('VIN-CON-3');
    await badgeOf('VIN-CON-3', 'online').waitFor();
    v3.close();
    await vehicleRow('VIN-CON-3').waitFor({ state: 'detached' });
    expect(await page.locator('#vehicles-body tr').count()).toBe(1);
    await page.getByLabel('Online only').uncheck();
    await page.getByLabel('Per page').selectOption('25');
    await vehicleRow('VIN-CON-P4').waitFor();
  });

  it('renders a readable page (screenshot) without script or CSP errors', async () => {
    await select('VIN-CON-1');
    v1.send(
      Cmd.TELEMETRY,
      encodeTelemetry({
        seq: 3,
        timestamp: Date.now(),
        speed: 712,
        heading: 900,
        odometer: 102345,
        fuelOrSoc: 80,
        batteryMv: 12600,
        engineRpm: 2100,
      }),
    );
    await v1.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    await page.locator('#latest-body tr', { hasText: 'engineRpm' }).waitFor();
    await page.screenshot({ path: SCREENSHOT_PATH, fullPage: true, timeout: WAIT_MS });
    const png = readFileSync(SCREENSHOT_PATH);
    expect(statSync(SCREENSHOT_PATH).size).toBeGreaterThan(10_000);
    expect(png.subarray(0, 8)).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    );
    expect(pageErrors).toEqual([]);
  });
});
