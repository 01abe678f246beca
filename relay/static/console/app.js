// Sign-in and the choice of view: an sk-rr- key opens the account view (its data routes take
// that key), anything else is tried as the admin key (the operator view's routes are /admin/*,
// which answer 401 to any other key, so the view has nothing to show without it).
import { get, session } from "./api.js";
import { $ } from "./ui.js";
import { showAccount } from "./account.js";
import { showOperator } from "./operator.js";

async function open(key) {
  const account = key.startsWith("sk-rr-");
  // A probe with the key: a wrong key is refused here, before any view is drawn.
  await get(account ? "/v1/limits" : "/admin/overview?limit=1", { key });
  session.key = key;
  $("#signin").hidden = true;
  $("#signout").hidden = false;
  $("#who").textContent = account ? `account key ${key.slice(0, 10)}…` : "operator";
  if (account) await showAccount();
  else await showOperator();
}

function signOut() {
  session.clear();
  location.reload();
}

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("#key");
  const key = input.value.trim();
  input.value = "";
  $("#signin-error").textContent = "";
  try {
    await open(key);
  } catch (error) {
    session.clear();
    $("#signin-error").textContent = error.status === 401 || error.status === 404
      ? `Refused: ${error.message}` : `Could not sign in: ${error.message}`;
  }
});
$("#signout").addEventListener("click", signOut);

if (session.key) open(session.key).catch(signOut);  // a reload in the same tab stays signed in
