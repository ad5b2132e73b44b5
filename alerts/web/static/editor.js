// Help for the editors' compose form: show the fields of each section's kind,
// and search stored articles to pick them. The form works without it (ids can
// be typed). Text from the server is only ever set as textContent.
"use strict";

(function () {
  const SEARCH_DELAY_MS = 300;

  function debounce(fn, delay) {
    let timer = null;
    return function (...args) {
      clearTimeout(timer);
      timer = setTimeout(() => fn.apply(this, args), delay);
    };
  }

  function showKind(section) {
    const kind = section.querySelector("[data-section-kind]").value;
    section.querySelectorAll("[data-kind]").forEach((part) => {
      part.hidden = part.dataset.kind !== kind;
    });
  }

  function addId(input, id) {
    const ids = input.value.split(",").map((part) => part.trim()).filter(Boolean);
    if (!ids.includes(String(id))) ids.push(String(id));
    input.value = ids.join(", ");
  }

  function setupSearch(section) {
    const box = section.querySelector("[data-article-search]");
    const picked = section.querySelector("[data-picked]");
    const input = box.querySelector("[data-search-input]");
    const status = box.querySelector("[data-search-status]");
    const results = box.querySelector("[data-search-results]");
    box.hidden = false;
    // Enter in the search box searches; it must not submit the whole issue.
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") event.preventDefault();
    });
    const search = debounce(async () => {
      const text = input.value.trim();
      results.replaceChildren();
      if (!text) {
        status.textContent = "";
        return;
      }
      try {
        const url = new URL("/editor/articles.json", window.location.origin);
        url.searchParams.set("q", text);
        const response = await fetch(url, { headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error("HTTP " + response.status);
        const found = await response.json();
        if (input.value.trim() !== text) return; // typed on since: a newer search follows
        status.textContent = found.articles.length
          ? found.articles.length + " found."
          : "Nothing found in the last weeks." + (found.query_error ? " (" + found.query_error + ")" : "");
        for (const article of found.articles) {
          const item = document.createElement("li");
          item.textContent = "#" + article.id + " " + article.title + " — " + article.source + " " + article.published;
          const add = document.createElement("button");
          add.type = "button";
          add.className = "button button--secondary button--small";
          add.textContent = "Add #" + article.id;
          add.addEventListener("click", () => addId(picked, article.id));
          item.append(add);
          results.append(item);
        }
      } catch (error) {
        status.textContent = "The search failed; type article ids instead.";
      }
    }, SEARCH_DELAY_MS);
    input.addEventListener("input", search);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-section]").forEach((section) => {
      const kind = section.querySelector("[data-section-kind]");
      kind.addEventListener("change", () => showKind(section));
      showKind(section);
      setupSearch(section);
    });
    const problem = document.querySelector(".field-error, .error-box");
    if (problem) problem.scrollIntoView({ block: "center" });
  });
})();
