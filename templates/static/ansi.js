/* CloudRunr: ANSI escape sequences in build logs -> classed <span>s.
 *
 * parseAnsi(text)   -> [{text, classes}]  pure, no DOM; used by the tests.
 * stripAnsi(text)   -> text without any escape sequence or control character.
 * ansiToNodes(text) -> DocumentFragment of text nodes and <span class="ansi-…">.
 *
 * Log text is hostile: it only ever reaches the DOM through createTextNode, never innerHTML.
 * SGR (ESC [ … m) becomes classes; every other escape (cursor movement, erase, OSC
 * hyperlinks and titles, DCS, charset selection…) and every other control character is dropped.
 * Colours are class names only (the page's CSP forbids inline styles): 256-colour and
 * truecolour values map to the nearest of the 16 basic colours.
 */
(function (root) {
  "use strict";

  var NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

  // xterm's default palette, used to find the nearest basic colour.
  var PALETTE = [
    [0, 0, 0], [205, 0, 0], [0, 205, 0], [205, 205, 0],
    [0, 0, 238], [205, 0, 205], [0, 205, 205], [229, 229, 229],
    [127, 127, 127], [255, 0, 0], [0, 255, 0], [255, 255, 0],
    [92, 92, 255], [255, 0, 255], [0, 255, 255], [255, 255, 255]
  ];

  function basicName(index) {
    return index < 8 ? NAMES[index] : "bright-" + NAMES[index - 8];
  }

  // Nearest of the 16 colours by "redmean" distance, a cheap perceptual approximation.
  function nearest(r, g, b) {
    var best = 0;
    var bestDist = Infinity;
    for (var i = 0; i < PALETTE.length; i++) {
      var p = PALETTE[i];
      var rm = (r + p[0]) / 2;
      var dr = r - p[0];
      var dg = g - p[1];
      var db = b - p[2];
      var d = (2 + rm / 256) * dr * dr + 4 * dg * dg + (2 + (255 - rm) / 256) * db * db;
      if (d < bestDist) {
        bestDist = d;
        best = i;
      }
    }
    return basicName(best);
  }

  function from256(n) {
    if (n < 16) return basicName(n);
    if (n < 232) {
      var c = n - 16;
      var steps = [0, 95, 135, 175, 215, 255];
      return nearest(steps[Math.floor(c / 36)], steps[Math.floor(c / 6) % 6], steps[c % 6]);
    }
    var v = 8 + (n - 232) * 10;
    return nearest(v, v, v);
  }

  function byte(s) {
    if (!/^\d{1,3}$/.test(s)) return -1;
    var n = Number(s);
    return n <= 255 ? n : -1;
  }

  // Reads an extended colour (after 38/48/58). `rest` holds what follows the 38 in the same
  // parameter (colon form, "38:5:n"); otherwise the values are the next ";" parameters.
  // Returns {name|null, used: how many following ";" parameters were consumed}.
  function extendedColour(rest, params, i) {
    var args;
    var colon = rest.length > 0;
    if (colon) {
      args = rest;
    } else {
      args = params.slice(i + 1, i + 5);
    }
    var mode = args[0];
    if (mode === "5") {
      var n = args.length > 1 ? byte(args[1]) : -1;
      return { name: n >= 0 ? from256(n) : null, used: colon ? 0 : Math.min(2, args.length) };
    }
    if (mode === "2") {
      var rgb;
      var used = 0;
      if (colon) {
        // 38:2:r:g:b or, per ITU T.416, 38:2:<colour space>:r:g:b
        rgb = args.length >= 5 ? args.slice(args.length - 3) : args.slice(1, 4);
      } else {
        rgb = args.slice(1, 4);
        used = Math.min(4, args.length);
      }
      var r = rgb.length === 3 ? byte(rgb[0]) : -1;
      var g = r >= 0 ? byte(rgb[1]) : -1;
      var b = g >= 0 ? byte(rgb[2]) : -1;
      return { name: b >= 0 ? nearest(r, g, b) : null, used: used };
    }
    // Unknown or missing mode: give up on the rest of this sequence, as terminals do.
    return { name: null, used: colon ? 0 : params.length };
  }

  function newStyle() {
    return { bold: false, dim: false, italic: false, underline: false, fg: null, bg: null };
  }

  function applySgr(style, paramText) {
    var params = paramText === "" ? ["0"] : paramText.split(";");
    for (var i = 0; i < params.length; i++) {
      var parts = params[i].split(":");
      var head = parts[0];
      if (head !== "" && !/^\d+$/.test(head)) continue;
      var code = head === "" ? 0 : Number(head);
      if (code === 0) {
        var fresh = newStyle();
        for (var k in fresh) style[k] = fresh[k];
      } else if (code === 1) style.bold = true;
      else if (code === 2) style.dim = true;
      else if (code === 3) style.italic = true;
      else if (code === 4) style.underline = parts[1] !== "0";
      else if (code === 21) style.underline = true; // doubly underlined
      else if (code === 22) style.bold = style.dim = false;
      else if (code === 23) style.italic = false;
      else if (code === 24) style.underline = false;
      else if (code >= 30 && code <= 37) style.fg = NAMES[code - 30];
      else if (code === 39) style.fg = null;
      else if (code >= 40 && code <= 47) style.bg = NAMES[code - 40];
      else if (code === 49) style.bg = null;
      else if (code >= 90 && code <= 97) style.fg = "bright-" + NAMES[code - 90];
      else if (code >= 100 && code <= 107) style.bg = "bright-" + NAMES[code - 100];
      else if (code === 38 || code === 48 || code === 58) {
        var ext = extendedColour(parts.slice(1), params, i);
        i += ext.used;
        if (ext.name && code === 38) style.fg = ext.name;
        if (ext.name && code === 48) style.bg = ext.name;
        // 58 (underline colour) is consumed and ignored.
      }
      // Anything else (blink, inverse, hidden, strike, fonts…) is ignored.
    }
  }

  function classesOf(style) {
    var c = [];
    if (style.bold) c.push("ansi-bold");
    if (style.dim) c.push("ansi-dim");
    if (style.italic) c.push("ansi-italic");
    if (style.underline) c.push("ansi-underline");
    if (style.fg) c.push("ansi-fg-" + style.fg);
    if (style.bg) c.push("ansi-bg-" + style.bg);
    return c;
  }

  var ESC = 0x1b;
  var BEL = 0x07;

  // Control characters that start something to drop: C0 (but tab and carriage return), DEL, C1.
  function isControl(c) {
    return (c < 0x20 && c !== 0x09) || (c >= 0x7f && c <= 0x9f);
  }

  // Index just past a string terminated by BEL, ESC \ or the 8-bit ST (OSC, DCS, APC, PM, SOS).
  // An unterminated string runs to the end of the text.
  function skipString(text, i) {
    for (var j = i; j < text.length; j++) {
      var c = text.charCodeAt(j);
      if (c === BEL || c === 0x9c) return j + 1;
      if (c === ESC) return text.charCodeAt(j + 1) === 0x5c ? j + 2 : j;
    }
    return text.length;
  }

  // Parses a control sequence whose parameters start at i. Returns {end, sgr|null}.
  function readCsi(text, i) {
    var j = i;
    while (j < text.length) {
      var c = text.charCodeAt(j);
      if (c >= 0x30 && c <= 0x3f) j++; // parameter bytes
      else break;
    }
    var paramEnd = j;
    while (j < text.length) {
      var d = text.charCodeAt(j);
      if (d >= 0x20 && d <= 0x2f) j++; // intermediate bytes
      else break;
    }
    if (j >= text.length) return { end: j, sgr: null }; // truncated: drop it
    var f = text.charCodeAt(j);
    if (f >= 0x40 && f <= 0x7e) {
      var params = text.slice(i, paramEnd);
      var isSgr = f === 0x6d && j === paramEnd && /^[\d;:]*$/.test(params);
      return { end: j + 1, sgr: isSgr ? params : null };
    }
    // Malformed (e.g. a control character inside): drop what was read, keep the rest as text.
    return { end: j, sgr: null };
  }

  function parseAnsi(input) {
    var text = input == null ? "" : String(input);
    var out = [];
    var style = newStyle();
    var classes = [];
    var overwrite = false;

    function emit(s) {
      if (s === "") return;
      if (overwrite) {
        // A carriage return followed by more text: the line was redrawn (progress bars).
        out.length = 0;
        overwrite = false;
      }
      var last = out[out.length - 1];
      if (last && last.classes.join(" ") === classes.join(" ")) last.text += s;
      else out.push({ text: s, classes: classes.slice() });
    }

    var start = 0;
    var i = 0;
    var n = text.length;
    while (i < n) {
      var c = text.charCodeAt(i);
      if (!isControl(c)) {
        i++;
        continue;
      }
      emit(text.slice(start, i));
      if (c === 0x0d) {
        overwrite = true;
        i++;
      } else if (c === ESC || c === 0x9b || c === 0x9d || c === 0x90 || c === 0x98 || c === 0x9e || c === 0x9f) {
        var kind; // the byte that says what follows
        var body;
        if (c === ESC) {
          kind = i + 1 < n ? text.charAt(i + 1) : "";
          body = i + 2;
        } else {
          kind = { 0x9b: "[", 0x9d: "]", 0x90: "P", 0x98: "X", 0x9e: "^", 0x9f: "_" }[c];
          body = i + 1;
        }
        if (kind === "[") {
          var csi = readCsi(text, body);
          if (csi.sgr !== null) {
            applySgr(style, csi.sgr);
            classes = classesOf(style);
          }
          i = csi.end;
        } else if (kind === "]" || kind === "P" || kind === "X" || kind === "^" || kind === "_") {
          i = skipString(text, body);
        } else if (kind === "") {
          i = n; // a lone ESC at the very end
        } else {
          // Other escapes: ESC, intermediates (0x20-0x2f), one final byte (0x30-0x7e).
          var j = i + 1;
          while (j < n && text.charCodeAt(j) >= 0x20 && text.charCodeAt(j) <= 0x2f) j++;
          if (j < n && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x7e) j++;
          i = j;
        }
      } else {
        i++; // any other control character (BEL, backspace, NUL…): dropped
      }
      start = i;
    }
    emit(text.slice(start, n));
    return out;
  }

  function stripAnsi(text) {
    return parseAnsi(text)
      .map(function (s) {
        return s.text;
      })
      .join("");
  }

  function ansiToNodes(text, doc) {
    var d = doc || (root && root.document);
    var frag = d.createDocumentFragment();
    var segments = parseAnsi(text);
    for (var i = 0; i < segments.length; i++) {
      var s = segments[i];
      if (s.classes.length === 0) {
        frag.appendChild(d.createTextNode(s.text));
      } else {
        var span = d.createElement("span");
        span.className = s.classes.join(" ");
        span.textContent = s.text;
        frag.appendChild(span);
      }
    }
    return frag;
  }

  var api = { parseAnsi: parseAnsi, stripAnsi: stripAnsi, ansiToNodes: ansiToNodes };

  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  }
  if (root) {
    root.CloudRunr = root.CloudRunr || {};
    root.CloudRunr.ansi = api;
  }
})(typeof window !== "undefined" ? window : null);
