// Create and edit forms made from each kind's CRD schema (GET /api/v1/schemas/{plural}): the
// schema the apiserver validates with, so a field the CRD gains appears here with no change to
// the portal, with its description as help text.
//
// A field is sent only when it is filled in. Defaults are shown (as the empty field's
// placeholder) and applied by the apiserver, not sent: a form that sent every default would
// also send the settings of a variant the user did not choose (lora's with promptTuning), which
// admission rightly refuses. The API's field errors ({field, message}) are shown beside the
// field they name, the group they name, or, for a field the form has no control for, in the
// form's list.
"use strict";

const Forms = (() => {
  const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  let seq = 0;

  const scalarKind = (node) => {
    if (node["x-kubernetes-int-or-string"]) return "text";
    if (node.enum) return "enum";
    return { boolean: "bool", integer: "int", number: "number" }[node.type] || "text";
  };
  const shown = (value) => (typeof value === "object" ? JSON.stringify(value) : String(value));

  // what a control holds: a scalar, a list of scalars (comma-separated), a map of strings
  // (key=value lines), or anything else as JSON (lists of objects, free-form objects)
  function controlKind(node) {
    if (node.type === "array") {
      const item = node.items || {};
      return item.type === "object" || item.type === "array" ? "json" : `list-${scalarKind(item)}`;
    }
    if (node.type === "object") return (node.additionalProperties || {}).type === "string" ? "map" : "json";
    return scalarKind(node);
  }

  function control(path, node, required) {
    const id = `field-${++seq}`;
    const kind = controlKind(node);
    const fallback = { json: "JSON", map: "key=value, one per line" }[kind] || (kind.startsWith("list-") ? "comma-separated" : "");
    const hint = node.default !== undefined ? `default: ${shown(node.default)}` : fallback;
    const attrs = `id="${id}" name="${esc(path)}" data-path="${esc(path)}" data-kind="${kind}" aria-describedby="${id}-error${node.description ? ` ${id}-help` : ""}"${required ? ' aria-required="true"' : ""}`;
    let input;
    if (kind === "json" || kind === "map") {
      input = `<textarea ${attrs} rows="2" cols="46" placeholder="${esc(hint)}"></textarea>`;
    } else if (kind === "enum" || kind === "bool") {
      const options = kind === "bool" ? ["true", "false"] : node.enum;
      input = `<select ${attrs}><option value="">${esc(hint || "(not set)")}</option>${options.map((o) => `<option>${esc(o)}</option>`).join("")}</select>`;
    } else {
      const type = kind === "int" || kind === "number" ? ` type="number" step="${kind === "int" ? "1" : "any"}"` : "";
      input = `<input ${attrs}${type} size="28" autocomplete="off" placeholder="${esc(hint)}">`;
    }
    const help = node.description ? `<small id="${id}-help">${esc(node.description)}</small>` : "";
    return `<div class="field"><label for="${id}">${esc(path.split(".").pop())}${required ? " *" : ""}</label> ${input} <span class="field-error" id="${id}-error"></span>${help}</div>`;
  }

  function render(path, node, required) {
    if (node.type !== "object" || !node.properties) return control(path, node, required);
    const inner = new Set(node.required || []);
    const fields = Object.entries(node.properties).map(([key, child]) => render(`${path}.${key}`, child, inner.has(key))).join("");
    const help = node.description ? `<small>${esc(node.description)}</small>` : "";
    return `<details class="group" data-group="${esc(path)}"${required ? " open" : ""}><summary>${esc(path.split(".").pop())}${required ? " *" : ""}</summary>${help}<span class="field-error" data-group-error></span>${fields}</details>`;
  }

  // the form of one kind: its name, then the spec's fields in the schema's order
  function build(schema) {
    const spec = schema.spec;
    const required = new Set(spec.required || []);
    const name = { type: "string", description: "The object's name: lower-case letters, digits and '-', starting and ending with a letter or digit." };
    const fields = Object.entries(spec.properties || {}).map(([key, node]) => render(`spec.${key}`, node, required.has(key))).join("");
    return `<form class="kind-form" data-plural="${esc(schema.plural)}" data-testid="form-${esc(schema.plural)}" novalidate aria-label="${esc(schema.kind)}">`
      + `<h2 class="form-title">New ${esc(schema.kind)}</h2><p><small>${esc(schema.description)}</small></p>`
      + `${control("metadata.name", name, true)}${fields}`
      + `<p><button type="submit" class="form-submit">Create</button> <button type="button" class="form-cancel" hidden>Cancel edit</button></p>`
      + `<div role="alert"><ul class="error form-errors" data-testid="errors-${esc(schema.plural)}"></ul></div></form>`;
  }

  function parse(el) {
    const raw = el.value.trim();
    if (raw === "") return undefined;
    const kind = el.dataset.kind;
    if (kind === "int" || kind === "number") return Number(raw);
    if (kind === "bool") return raw === "true";
    if (kind === "json") {
      try { return JSON.parse(raw); } catch (err) { throw new Error(`not JSON: ${err.message}`); }
    }
    if (kind === "map") {
      return Object.fromEntries(raw.split("\n").filter((line) => line.trim()).map((line) => {
        const at = line.indexOf("=");
        if (at < 1) throw new Error(`"${line.trim()}" is not key=value`);
        return [line.slice(0, at).trim(), line.slice(at + 1).trim()];
      }));
    }
    if (kind.startsWith("list-")) {
      const items = raw.split(",").map((s) => s.trim()).filter(Boolean);
      return kind === "list-int" || kind === "list-number" ? items.map(Number) : items;
    }
    return raw;
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach((s) => { s.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    form.querySelector(".form-errors").innerHTML = "";
  }

  const openAround = (el) => { for (let d = el.closest("details"); d; d = d.parentElement.closest("details")) d.open = true; };
  const add = (span, message) => { span.textContent = span.textContent ? `${span.textContent}; ${message}` : message; };

  // beside the control the field names (a list's item: the list; a key inside a JSON or map
  // control: that control), else beside the group it names; false if the form has neither
  function showError(form, field, message) {
    let path = String(field || "").replace(/\[[^\]]*\]/g, "");
    while (path) {
      const el = form.querySelector(`[data-path="${CSS.escape(path)}"]`);
      if (el) {
        add(document.getElementById(`${el.id}-error`), message);
        el.setAttribute("aria-invalid", "true");
        openAround(el);
        return true;
      }
      const group = form.querySelector(`[data-group="${CSS.escape(path)}"]`);
      if (group) {
        add(group.querySelector("[data-group-error]"), message);
        group.open = true;
        openAround(group);
        return true;
      }
      path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
    }
    return false;
  }

  function showErrors(form, detail, message) {
    const items = Array.isArray(detail) ? detail : [{ field: "", message }];
    const rest = items.filter((e) => !showError(form, e.field, e.message));
    form.querySelector(".form-errors").innerHTML = rest.map((e) => `<li>${esc(e.field ? `${e.field}: ${e.message}` : e.message)}</li>`).join("");
  }

  // the body the form describes ({metadata: {name}, spec}), or null when a field cannot be read
  function collect(form) {
    clearErrors(form);
    const body = { metadata: {}, spec: {} };
    let readable = true;
    form.querySelectorAll("[data-path]").forEach((el) => {
      try {
        const value = parse(el);
        if (value === undefined) return;
        const keys = el.dataset.path.split(".");
        let at = body;
        keys.slice(0, -1).forEach((k) => { at = at[k] = at[k] || {}; });
        at[keys.at(-1)] = value;
      } catch (err) {
        showError(form, el.dataset.path, err.message);
        readable = false;
      }
    });
    return readable ? body : null;
  }

  // an existing object in the form, to edit its spec (its name cannot change)
  function fill(form, obj) {
    form.reset();
    clearErrors(form);
    form.querySelectorAll("[data-path]").forEach((el) => {
      const value = el.dataset.path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
      if (value === undefined || value === null) return;
      const kind = el.dataset.kind;
      if (kind === "json") el.value = JSON.stringify(value);
      else if (kind === "map") el.value = Object.entries(value).map(([k, v]) => `${k}=${v}`).join("\n");
      else if (kind.startsWith("list-")) el.value = value.join(", ");
      else el.value = String(value);
      openAround(el);
    });
  }

  return { build, collect, fill, showErrors, clearErrors };
})();
