// Shows whether the node is ready, from the gateway's public /readyz.
(async () => {
  const el = document.getElementById("state");
  try {
    const res = await fetch("/readyz", { cache: "no-store" });
    const body = await res.json();
    el.dataset.state = body.status;
    el.textContent = body.status === "ready" ? "Ready / Готов" : "Not ready yet / Ещё не готов";
  } catch (e) {
    el.dataset.state = "unavailable";
    el.textContent = "Cannot reach the server / Сервер недоступен";
  }
})();
