// Run with: node --test templates/static/
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { parseAnsi, stripAnsi, ansiToNodes } = require("./ansi.js");

const ESC = "\x1b";
const seg = (text, ...classes) => ({ text, classes });

test("plain text is one unstyled segment", () => {
  assert.deepEqual(parseAnsi("hello world"), [seg("hello world")]);
  assert.deepEqual(parseAnsi("  indented\ttab"), [seg("  indented\ttab")]);
  assert.deepEqual(parseAnsi("ünïcödé ✓ 漢字 🚀"), [seg("ünïcödé ✓ 漢字 🚀")]);
});

test("empty and missing input give no segments", () => {
  assert.deepEqual(parseAnsi(""), []);
  assert.deepEqual(parseAnsi(null), []);
  assert.deepEqual(parseAnsi(undefined), []);
  assert.deepEqual(parseAnsi(`${ESC}[31m${ESC}[0m`), []);
});

test("basic foreground and background colours", () => {
  assert.deepEqual(parseAnsi(`${ESC}[31mred${ESC}[0m plain`), [seg("red", "ansi-fg-red"), seg(" plain")]);
  assert.deepEqual(parseAnsi(`${ESC}[44mon blue`), [seg("on blue", "ansi-bg-blue")]);
  assert.deepEqual(parseAnsi(`${ESC}[92mok${ESC}[103mwarn`), [
    seg("ok", "ansi-fg-bright-green"),
    seg("warn", "ansi-fg-bright-green", "ansi-bg-bright-yellow"),
  ]);
  const names = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
  names.forEach((name, i) => {
    assert.deepEqual(parseAnsi(`${ESC}[${30 + i}mx`), [seg("x", `ansi-fg-${name}`)]);
    assert.deepEqual(parseAnsi(`${ESC}[${40 + i}mx`), [seg("x", `ansi-bg-${name}`)]);
    assert.deepEqual(parseAnsi(`${ESC}[${90 + i}mx`), [seg("x", `ansi-fg-bright-${name}`)]);
    assert.deepEqual(parseAnsi(`${ESC}[${100 + i}mx`), [seg("x", `ansi-bg-bright-${name}`)]);
  });
});

test("resets: all, default colours, intensity, italic, underline", () => {
  assert.deepEqual(parseAnsi(`${ESC}[1;3;4;31;42ma${ESC}[39mb${ESC}[49mc${ESC}[22md${ESC}[23me${ESC}[24mf`), [
    seg("a", "ansi-bold", "ansi-italic", "ansi-underline", "ansi-fg-red", "ansi-bg-green"),
    seg("b", "ansi-bold", "ansi-italic", "ansi-underline", "ansi-bg-green"),
    seg("c", "ansi-bold", "ansi-italic", "ansi-underline"),
    seg("d", "ansi-italic", "ansi-underline"),
    seg("e", "ansi-underline"),
    seg("f"),
  ]);
  // ESC[m is ESC[0m; an empty parameter is 0.
  assert.deepEqual(parseAnsi(`${ESC}[31ma${ESC}[mb`), [seg("a", "ansi-fg-red"), seg("b")]);
  assert.deepEqual(parseAnsi(`${ESC}[31ma${ESC}[;1mb`), [seg("a", "ansi-fg-red"), seg("b", "ansi-bold")]);
  // 22 clears both bold and dim.
  assert.deepEqual(parseAnsi(`${ESC}[1;2ma${ESC}[22mb`), [seg("a", "ansi-bold", "ansi-dim"), seg("b")]);
});

test("bold and colour combine, in either order and across sequences", () => {
  const expected = [seg("x", "ansi-bold", "ansi-fg-green")];
  assert.deepEqual(parseAnsi(`${ESC}[1;32mx`), expected);
  assert.deepEqual(parseAnsi(`${ESC}[32;1mx`), expected);
  assert.deepEqual(parseAnsi(`${ESC}[1m${ESC}[32mx`), expected);
  // A later colour replaces the earlier one but keeps bold.
  assert.deepEqual(parseAnsi(`${ESC}[1;32ma${ESC}[35mb`), [
    seg("a", "ansi-bold", "ansi-fg-green"),
    seg("b", "ansi-bold", "ansi-fg-magenta"),
  ]);
  // Typical npm / vite output.
  assert.deepEqual(parseAnsi(`${ESC}[2mdist/${ESC}[22m${ESC}[36massets/index.js${ESC}[39m  ${ESC}[1m${ESC}[2m41.2 kB${ESC}[22m`), [
    seg("dist/", "ansi-dim"),
    seg("assets/index.js", "ansi-fg-cyan"),
    seg("  "),
    seg("41.2 kB", "ansi-bold", "ansi-dim"),
  ]);
});

test("adjacent segments with the same style merge", () => {
  assert.deepEqual(parseAnsi(`${ESC}[31ma${ESC}[31mb${ESC}[2Kc`), [seg("abc", "ansi-fg-red")]);
});

test("256 colours map to the nearest basic colour", () => {
  assert.deepEqual(parseAnsi(`${ESC}[38;5;1mx`), [seg("x", "ansi-fg-red")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;5;9mx`), [seg("x", "ansi-fg-bright-red")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;5;196mx`), [seg("x", "ansi-fg-bright-red")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;5;46mx`), [seg("x", "ansi-fg-bright-green")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;5;21mx`), [seg("x", "ansi-fg-blue")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;5;231mx`), [seg("x", "ansi-fg-bright-white")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;5;232mx`), [seg("x", "ansi-fg-black")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;5;244mx`), [seg("x", "ansi-fg-bright-black")]);
  assert.deepEqual(parseAnsi(`${ESC}[48;5;2mx`), [seg("x", "ansi-bg-green")]);
  // Colon form.
  assert.deepEqual(parseAnsi(`${ESC}[38:5:196mx`), [seg("x", "ansi-fg-bright-red")]);
  // The 256-colour arguments do not leak into the following parameters: 5 is not blink,
  // 1 is not bold here, and the parameter after them still applies.
  assert.deepEqual(parseAnsi(`${ESC}[38;5;1;4mx`), [seg("x", "ansi-underline", "ansi-fg-red")]);
});

test("truecolour maps to the nearest basic colour", () => {
  assert.deepEqual(parseAnsi(`${ESC}[38;2;255;0;0mx`), [seg("x", "ansi-fg-bright-red")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;2;200;10;10mx`), [seg("x", "ansi-fg-red")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;2;10;10;10mx`), [seg("x", "ansi-fg-black")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;2;250;250;250mx`), [seg("x", "ansi-fg-bright-white")]);
  assert.deepEqual(parseAnsi(`${ESC}[48;2;0;0;240mx`), [seg("x", "ansi-bg-blue")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;2;0;200;200;1mx`), [seg("x", "ansi-bold", "ansi-fg-cyan")]);
  // Colon forms, with and without a colour-space id.
  assert.deepEqual(parseAnsi(`${ESC}[38:2:0:255:0mx`), [seg("x", "ansi-fg-bright-green")]);
  assert.deepEqual(parseAnsi(`${ESC}[38:2::0:255:0mx`), [seg("x", "ansi-fg-bright-green")]);
  // Underline colour (58) is consumed without affecting anything else.
  assert.deepEqual(parseAnsi(`${ESC}[58;2;255;0;0;4mx`), [seg("x", "ansi-underline")]);
});

test("invalid extended colours are ignored", () => {
  assert.deepEqual(parseAnsi(`${ESC}[31m${ESC}[38;5;300mx`), [seg("x", "ansi-fg-red")]);
  assert.deepEqual(parseAnsi(`${ESC}[31m${ESC}[38;2;1;2mx`), [seg("x", "ansi-fg-red")]);
  assert.deepEqual(parseAnsi(`${ESC}[38mx`), [seg("x")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;9;1mx`), [seg("x")]);
});

test("cursor movement, erase and other CSI sequences are dropped", () => {
  assert.deepEqual(parseAnsi(`a${ESC}[2Kb${ESC}[1Gc${ESC}[3Ad${ESC}[10;20He${ESC}[Jf`), [seg("abcdef")]);
  assert.deepEqual(parseAnsi(`${ESC}[?25lhidden cursor${ESC}[?25h`), [seg("hidden cursor")]);
  // Private / intermediate forms that end in "m" are not SGR.
  assert.deepEqual(parseAnsi(`${ESC}[>4;2mx${ESC}[?1mY`), [seg("xY")]);
  // 8-bit CSI.
  assert.deepEqual(parseAnsi("\x9b31mred\x9b0m"), [seg("red", "ansi-fg-red")]);
});

test("OSC hyperlinks keep their text, titles and other strings are dropped", () => {
  assert.deepEqual(parseAnsi(`see ${ESC}]8;;https://example.com${ESC}\\the docs${ESC}]8;;${ESC}\\ now`), [
    seg("see the docs now"),
  ]);
  assert.deepEqual(parseAnsi(`${ESC}]8;id=1;https://example.com\x07link${ESC}]8;;\x07`), [seg("link")]);
  assert.deepEqual(parseAnsi(`${ESC}]0;window title\x07text`), [seg("text")]);
  assert.deepEqual(parseAnsi(`a${ESC}P1$r0m${ESC}\\b${ESC}_apc${ESC}\\c`), [seg("abc")]);
  assert.deepEqual(parseAnsi("\x9d0;title\x9cok"), [seg("ok")]);
});

test("other escapes and control characters are dropped", () => {
  assert.deepEqual(parseAnsi(`${ESC}(Bcharset${ESC}7save${ESC}8${ESC}=${ESC}>${ESC}c`), [seg("charsetsave")]);
  assert.deepEqual(parseAnsi("bell\x07 back\bspace nul\x00 del\x7f"), [seg("bell backspace nul del")]);
  assert.deepEqual(parseAnsi("tab\tkept"), [seg("tab\tkept")]);
});

test("carriage returns keep the last redraw of the line", () => {
  assert.deepEqual(parseAnsi("10%\r50%\r100%"), [seg("100%")]);
  assert.deepEqual(parseAnsi("done\r"), [seg("done")]);
  assert.deepEqual(parseAnsi(`${ESC}[32m10%\r${ESC}[1m100%`), [seg("100%", "ansi-bold", "ansi-fg-green")]);
});

test("hostile markup stays text, untouched", () => {
  const hostile = `<script>alert(1)</script><img src=x onerror="alert(2)">&amp;&lt;'"`;
  assert.deepEqual(parseAnsi(hostile), [seg(hostile)]);
  assert.deepEqual(parseAnsi(`${ESC}[31m${hostile}${ESC}[0m`), [seg(hostile, "ansi-fg-red")]);
  // Nothing can smuggle a class name in through the parameters.
  const segs = parseAnsi(`${ESC}[31;" onmouseover="alert(1)mx`);
  for (const s of segs) for (const c of s.classes) assert.match(c, /^ansi-[a-z-]+$/);
  assert.equal(stripAnsi(`${ESC}[31;" onmouseover="alert(1)mx`).includes(ESC), false);
});

test("malformed and truncated escapes never show up as garbage", () => {
  assert.deepEqual(parseAnsi(`text${ESC}`), [seg("text")]);
  assert.deepEqual(parseAnsi(`text${ESC}[`), [seg("text")]);
  assert.deepEqual(parseAnsi(`text${ESC}[31`), [seg("text")]);
  assert.deepEqual(parseAnsi(`text${ESC}[38;5`), [seg("text")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;5mtext`), [seg("text")]);
  assert.deepEqual(parseAnsi(`${ESC}[38;2;1mtext`), [seg("text")]);
  assert.deepEqual(parseAnsi(`text${ESC}]8;;https://unterminated`), [seg("text")]);
  // "x" is a final byte (ECMA-48), so the sequence ends there and, like a terminal, "m" shows.
  assert.deepEqual(parseAnsi(`${ESC}[31;xmred?`), [seg("mred?")]);
  assert.deepEqual(parseAnsi(`${ESC}${ESC}[31mx`), [seg("x", "ansi-fg-red")]);
  assert.deepEqual(parseAnsi(`${ESC}[99999999999999999999mx`), [seg("x")]);
  for (const s of [`${ESC}[`, `${ESC}]`, `${ESC}[1;`, `a${ESC}[\nb`, `${ESC}P`, "\x9b", "\x9d"]) {
    const text = stripAnsi(s);
    assert.equal(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/.test(text), false, JSON.stringify(s));
  }
});

test("very long lines are parsed quickly and completely", () => {
  const plain = "x".repeat(1_000_000);
  let started = Date.now();
  assert.deepEqual(parseAnsi(plain), [seg(plain)]);

  const chunk = `${ESC}[31mred${ESC}[0m plain ${ESC}[1;38;5;46mgreen${ESC}[0m `;
  const coloured = chunk.repeat(20_000);
  const segs = parseAnsi(coloured);
  assert.equal(segs.length, 80_000);
  assert.equal(stripAnsi(coloured), "red plain green ".repeat(20_000));

  // Pathological: an escape that never terminates, and thousands of parameters.
  assert.deepEqual(parseAnsi(`ok${ESC}[${"1;".repeat(100_000)}`), [seg("ok")]);
  assert.deepEqual(parseAnsi(`${ESC}[${"1;".repeat(100_000)}31mx`), [seg("x", "ansi-bold", "ansi-fg-red")]);
  assert.deepEqual(parseAnsi(`ok${ESC}]${"a".repeat(500_000)}`), [seg("ok")]);
  assert.ok(Date.now() - started < 5000, "parsing took too long");
});

// A tiny stand-in for the DOM, enough for ansiToNodes.
function fakeDocument() {
  const node = (type, props) => Object.assign({ type, children: [] }, props);
  return {
    createDocumentFragment: () =>
      node("fragment", {
        appendChild(child) {
          this.children.push(child);
          return child;
        },
      }),
    createTextNode: (data) => node("text", { data }),
    createElement: (tag) => {
      const el = node("element", { tag, className: "", textContent: "" });
      Object.defineProperty(el, "innerHTML", {
        set() {
          throw new Error("innerHTML must never be used");
        },
      });
      return el;
    },
  };
}

test("ansiToNodes builds text nodes and classed spans, never markup", () => {
  const doc = fakeDocument();
  const frag = ansiToNodes(`plain ${ESC}[1;31m<b>bold red</b>${ESC}[0m <script>alert(1)</script>`, doc);
  assert.deepEqual(
    frag.children.map((c) => (c.type === "text" ? ["text", c.data] : [c.tag, c.className, c.textContent])),
    [
      ["text", "plain "],
      ["span", "ansi-bold ansi-fg-red", "<b>bold red</b>"],
      ["text", " <script>alert(1)</script>"],
    ],
  );
  assert.deepEqual(ansiToNodes("", doc).children, []);
});
