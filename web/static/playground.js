// The playground (/playground): send one conversation to one to four models through wlm's
// own /v1/chat/completions and stream each reply into its column as it arrives.
//
// No key is written into the page: each request carries the page's session cookie (the
// browser adds it, same origin), its CSRF token and x-wlm-playground: 1, which the proxy
// takes for the client "playground" (docs/playground.md). When a stream ends, the
// column's figures are read from that request's telemetry row (/playground/figures), so
// they are the figures the analytics count. Written for the CSP: no eval, no inline code.
(function () {
  "use strict";

  var DASH = "\u2013";
  var form = document.getElementById("pg-form");
  if (!form) return;
  var columns = document.getElementById("pg-columns");
  var modelsBox = document.getElementById("pg-models");
  var messagesBox = document.getElementById("pg-messages");
  var sendButton = document.getElementById("pg-send");
  var stopButton = document.getElementById("pg-stop");
  var errorBox = document.getElementById("pg-error");
  var addModel = document.getElementById("pg-add-model");
  var addMessage = document.getElementById("pg-add-message");
  var maxColumns = parseInt(form.dataset.maxColumns || "4", 10);
  var running = [];

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
    } catch (e) {
      return "";
    }
  }

  // -- the form ------------------------------------------------------------------------

  function modelRows() {
    return Array.prototype.slice.call(modelsBox.querySelectorAll(".pg-model"));
  }

  function refreshModelButtons() {
    var rows = modelRows();
    addModel.disabled = rows.length >= maxColumns;
    rows.forEach(function (row) {
      row.querySelector(".pg-remove-model").hidden = rows.length < 2;
    });
  }

  addModel.addEventListener("click", function () {
    var rows = modelRows();
    if (rows.length >= maxColumns) return;
    var last = rows[rows.length - 1];
    var copy = last.cloneNode(true);
    var select = copy.querySelector("select");
    // The next model in the list, so a compare starts with two different ones.
    var next = last.querySelector("select").selectedIndex + 1;
    select.selectedIndex = next < select.options.length ? next : 0;
    modelsBox.insertBefore(copy, addModel);
    refreshModelButtons();
    select.focus();
  });

  modelsBox.addEventListener("click", function (event) {
    var target = event.target;
    if (target.classList && target.classList.contains("pg-remove-model") && modelRows().length > 1) {
      target.closest(".pg-model").remove();
      refreshModelButtons();
    }
  });

  function newMessage(role, content) {
    var template = document.getElementById("pg-message-template");
    var row = template.content.firstElementChild.cloneNode(true);
    row.querySelector("select").value = role;
    row.querySelector("textarea").value = content || "";
    messagesBox.insertBefore(row, addMessage);
    return row;
  }

  addMessage.addEventListener("click", function () {
    var rows = messagesBox.querySelectorAll(".pg-message");
    var last = rows.length ? rows[rows.length - 1].querySelector("select").value : "assistant";
    newMessage(last === "user" ? "assistant" : "user", "").querySelector("textarea").focus();
  });

  messagesBox.addEventListener("click", function (event) {
    var target = event.target;
    if (target.classList && target.classList.contains("pg-remove-message")) {
      target.closest(".pg-message").remove();
    }
  });

  function conversation() {
    var messages = [];
    var system = document.getElementById("pg-system").value;
    if (system.trim()) messages.push({ role: "system", content: system });
    messagesBox.querySelectorAll(".pg-message").forEach(function (row) {
      var content = row.querySelector("textarea").value;
      if (content.trim()) messages.push({ role: row.querySelector("select").value, content: content });
    });
    return messages;
  }

  function numberField(id) {
    var raw = document.getElementById(id).value.trim();
    if (raw === "") return null;
    var value = Number(raw);
    return isFinite(value) ? value : null;
  }

  // -- formatting, as the pages' Jinja filters do ---------------------------------------

  function ms(value) {
    if (value === null || value === undefined) return DASH;
    if (value < 1000) return Math.round(value) + " ms";
    if (value < 60000) return (value / 1000).toFixed(2) + " s";
    return Math.floor(value / 60000) + " min " + Math.round((value % 60000) / 1000) + " s";
  }

  function decimal(value, digits) {
    if (value === null || value === undefined) return DASH;
    return Number(value).toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  }

  function cost(value) {
    return value === null || value === undefined ? DASH : "$" + Number(value).toFixed(6);
  }

  // -- one column per model ----------------------------------------------------------

  function Column(select) {
    var option = select.options[select.selectedIndex];
    var template = document.getElementById("pg-column-template");
    this.el = template.content.firstElementChild.cloneNode(true);
    this.model = select.value;
    this.provider = (option && option.dataset.provider) || "";
    this.localId = (option && option.dataset.localId) || "";
    this.el.dataset.model = this.model;
    this.el.dataset.provider = this.provider;
    var badge = this.el.querySelector(".badge");
    badge.textContent = this.provider || "(unrouted)";
    badge.classList.add("provider-" + (this.provider || "none"));
    this.el.querySelector(".pg-model-name").textContent = this.model;
    this.status = this.el.querySelector(".pg-status-text");
    this.reply = this.el.querySelector(".pg-reply");
    this.controller = new AbortController();
    this.text = "";
    this.requestId = "";
    this.chunks = 0;
    this.usage = null;
    this.firstTokenAt = null;
    this.loadingSince = null;
    this.el.querySelector(".pg-after").hidden = true;
  }

  Column.prototype.phase = function (phase, text) {
    this.el.dataset.phase = phase;
    if (text !== undefined) this.status.textContent = text;
    var spinner = this.el.querySelector(".pg-status .spinner");
    var moving = phase === "waiting" || phase === "loading" || phase === "streaming";
    if (spinner) spinner.hidden = !moving;
  };

  Column.prototype.figure = function (name, text) {
    this.el.querySelector(".pg-" + name).textContent = text;
  };

  // A local model that is not loaded yet: its engine state, polled until the first token.
  Column.prototype.watchLoading = function () {
    var column = this;
    if (!column.localId) return;
    function poll() {
      if (column.el.dataset.phase !== "waiting" && column.el.dataset.phase !== "loading") return;
      fetch("/models/row.json?id=" + encodeURIComponent(column.localId), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          var state = body && body.m ? body.m.state : null;
          if (state) showState(column.localId, state);
          var phase = column.el.dataset.phase;
          if (phase !== "waiting" && phase !== "loading") return;
          if (state && state !== "ready") {
            column.loadingSince = column.loadingSince || performance.now();
            column.showLoading(state);
          }
          if (state !== "ready" && state !== "failed") setTimeout(poll, 1000);
        })
        .catch(function () { /* the stream reports what matters */ });
    }
    poll();
  };

  // The model lists name each local model's state ("tiny-chat (stopped)"): keep it current.
  function showState(localId, state) {
    modelsBox.querySelectorAll("option[data-local-id]").forEach(function (option) {
      if (option.dataset.localId === localId) option.textContent = option.value + " (" + state + ")";
    });
  }

  Column.prototype.refreshState = function () {
    var localId = this.localId;
    if (!localId) return;
    fetch("/models/row.json?id=" + encodeURIComponent(localId), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) { if (body && body.m) showState(localId, body.m.state); })
      .catch(function () { /* only a label */ });
  };

  Column.prototype.showLoading = function (what) {
    var seconds = Math.round((performance.now() - (this.loadingSince || this.started)) / 1000);
    this.phase("loading", "Loading " + this.model + ": " + what + " (" + seconds + " s)");
  };

  Column.prototype.event = function (block) {
    var data = [];
    block.split(/\r?\n/).forEach(function (line) {
      if (line.charAt(0) === ":") {
        var comment = line.slice(1).trim();
        // wlm's keep-alive while a local engine loads: ": loading <model> ..."
        if (/^loading\b/.test(comment) && this.firstTokenAt === null) {
          this.loadingSince = this.loadingSince || this.started;
          this.showLoading("the engine is loading");
        }
      } else if (line.indexOf("data:") === 0) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
    }, this);
    if (!data.length) return;
    var payload = data.join("\n");
    if (payload === "[DONE]") return;
    var chunk;
    try {
      chunk = JSON.parse(payload);
    } catch (e) {
      return;
    }
    if (chunk.error) throw new Error(chunk.error.message || "The stream ended with an error.");
    if (chunk.usage) this.usage = chunk.usage;
    var choice = chunk.choices && chunk.choices[0];
    var delta = choice && choice.delta;
    if (!delta) return;
    var piece = delta.content || "";
    if (!piece && !delta.reasoning_content) return;
    if (this.firstTokenAt === null) {
      this.firstTokenAt = performance.now();
      this.figure("ttft", ms(this.firstTokenAt - this.started));
    }
    if (!piece) {
      this.phase("streaming", "Thinking…"); // reasoning, which the reply does not show
      return;
    }
    this.text += piece;
    this.chunks += 1;
    this.reply.textContent = this.text;
    this.phase("streaming", "Streaming… " + this.chunks + " chunk" + (this.chunks === 1 ? "" : "s"));
  };

  Column.prototype.run = async function (body) {
    this.started = performance.now();
    this.phase("waiting", "Waiting for " + this.model + "…");
    this.watchLoading();
    var response = await fetch("/v1/chat/completions", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "content-type": "application/json",
        "x-wlm-playground": "1",
        "x-csrf-token": csrfToken(),
      },
      body: JSON.stringify(Object.assign({ model: this.model }, body)),
      signal: this.controller.signal,
    });
    this.requestId = response.headers.get("x-request-id") || "";
    this.el.dataset.requestId = this.requestId;
    if (!response.ok) {
      var message = "HTTP " + response.status;
      try {
        var problem = await response.json();
        message = (problem.error && problem.error.message) || message;
      } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    for (;;) {
      var part = await reader.read();
      if (part.done) break;
      buffer += decoder.decode(part.value, { stream: true });
      var events = buffer.split(/\r?\n\r?\n/);
      buffer = events.pop();
      for (var i = 0; i < events.length; i++) this.event(events[i]);
    }
    if (buffer.trim()) this.event(buffer);
    this.endedAt = performance.now();
  };

  // Figures measured here, until (or unless) the telemetry row has them.
  Column.prototype.browserFigures = function () {
    var tokens = this.usage ? this.usage.completion_tokens : null;
    this.figure("tokens", decimal(tokens, 0));
    if (tokens && this.firstTokenAt !== null && this.endedAt > this.firstTokenAt) {
      this.figure("tps", decimal(tokens / ((this.endedAt - this.firstTokenAt) / 1000), 1));
    }
  };

  Column.prototype.telemetryFigures = async function () {
    if (!this.requestId) return;
    var record = null;
    try {
      // Answers once the row is written (the server waits for it, a few seconds at most).
      var response = await fetch("/playground/figures?id=" + encodeURIComponent(this.requestId), {
        credentials: "same-origin",
      });
      if (response.ok) record = (await response.json()).record;
    } catch (e) { /* the figures measured here stay */ }
    if (!record) {
      this.el.dataset.figures = "browser";
      this.el.querySelector(".pg-cost").title = "No telemetry row: cost unknown";
      return;
    }
    this.figure("ttft", ms(record.ttft_ms));
    this.figure("tps", decimal(record.tokens_per_s, 1));
    this.figure("tokens", decimal(record.completion_tokens, 0));
    this.figure("cost", cost(record.cost_usd));
    this.el.dataset.cost = record.cost_usd === null ? "" : String(record.cost_usd);
    this.el.dataset.figures = "telemetry";
  };

  Column.prototype.start = async function (body) {
    try {
      await this.run(body);
      this.phase("done", this.text ? "Done." : "Done (an empty reply).");
      this.browserFigures();
    } catch (error) {
      if (error && error.name === "AbortError") {
        this.phase("stopped", "Stopped.");
      } else {
        this.phase("error", (error && error.message) || String(error));
        this.el.classList.add("pg-failed");
      }
    }
    this.refreshState();
    var after = this.el.querySelector(".pg-after");
    if (this.requestId) {
      var link = after.querySelector(".pg-request-link");
      link.href = "/requests/" + encodeURIComponent(this.requestId);
      link.textContent = "request " + this.requestId;
      after.hidden = false;
      after.querySelector(".pg-keep").hidden = !this.text;
      await this.telemetryFigures();
    }
  };

  columns.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.classList || !target.classList.contains("pg-keep")) return;
    var reply = target.closest(".pg-column").querySelector(".pg-reply").textContent;
    newMessage("assistant", reply);
    newMessage("user", "").querySelector("textarea").focus();
  });

  // -- send and stop -------------------------------------------------------------------

  function finished() {
    sendButton.disabled = false;
    stopButton.disabled = true;
    running = [];
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (running.length) return;
    errorBox.textContent = "";
    var messages = conversation();
    if (!messages.some(function (m) { return m.role !== "system"; })) {
      errorBox.textContent = "Write a message first.";
      return;
    }
    var body = { messages: messages, stream: true, stream_options: { include_usage: true } };
    var temperature = numberField("pg-temperature");
    var maxTokens = numberField("pg-max-tokens");
    if (temperature !== null) body.temperature = temperature;
    if (maxTokens !== null) body.max_tokens = Math.round(maxTokens);
    columns.querySelectorAll(".pg-column:not(.pg-logged)").forEach(function (el) { el.remove(); });
    var selects = modelsBox.querySelectorAll("select");
    columns.dataset.count = String(selects.length + columns.querySelectorAll(".pg-logged").length);
    running = Array.prototype.map.call(selects, function (select) {
      var column = new Column(select);
      columns.appendChild(column.el);
      return column;
    });
    sendButton.disabled = true;
    stopButton.disabled = false;
    Promise.all(running.map(function (column) { return column.start(body); })).then(finished, finished);
  });

  stopButton.addEventListener("click", function () {
    running.forEach(function (column) { column.controller.abort(); });
  });

  refreshModelButtons();
  columns.dataset.count = String(columns.querySelectorAll(".pg-column").length);
  form.dataset.ready = "1";
  // A replay sends at once only when the server saw the browser come from the request's
  // own page (from_request_page in wlm/web/playground.py); from a link it waits for a click.
  if (form.dataset.autorun === "1" && !sendButton.disabled) form.requestSubmit();
})();
