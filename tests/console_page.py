"""The agent console (/console) driven in a browser as an agent would."""
from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from .browser import Browser

CONSOLE_STATE = """
const t = s => [...document.querySelectorAll(s)].map(e => e.textContent);
return {
  online: document.getElementById('conn').classList.contains('ok'),
  loginError: document.getElementById('login-error').textContent,
  waiting: t('#waiting li .who'), active: t('#active li .who'), visitors: t('#online li .who'),
  title: document.getElementById('chat-title').textContent, messages: t('#messages .msg .text'),
  notes: t('#messages .note'), typing: document.getElementById('typing').textContent,
  toast: document.getElementById('toast').hidden ? null : document.getElementById('toast').textContent
};
"""


class Console:
    """One agent's console page in its own browser."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser = browser
        self.base = base

    def state(self) -> dict:
        """What the console shows now."""
        return self.browser.driver.execute_script(CONSOLE_STATE)

    def until(self, predicate, what: str) -> dict:
        """Wait until the console's state satisfies `predicate`."""
        found: dict = {}

        def check() -> bool:
            state = self.state()
            if predicate(state):
                found.update(state)
                return True
            return False

        self.browser.wait(check, what)
        return found

    def log_in(self, email: str, password: str, role: str = "agent") -> None:
        """Open /console and submit the login form."""
        driver = self.browser.driver
        driver.get(self.base + "/console")
        driver.execute_script("sessionStorage.clear()")  # logged out: the page signs in again from it
        driver.get(self.base + "/console")
        driver.find_element(By.ID, "email").send_keys(email)
        driver.find_element(By.CSS_SELECTOR, f"input[name=role][value={role}]").click()
        password_box = driver.find_element(By.ID, "password")
        password_box.send_keys(password)
        password_box.send_keys(Keys.ENTER)

    def press(self, list_id: str, label_part: str, button: str) -> None:
        """Click `button` in the row of list `list_id` whose text contains `label_part`."""
        for row in self.browser.driver.find_elements(By.CSS_SELECTOR, f"#{list_id} li"):
            if label_part in row.text:
                for candidate in row.find_elements(By.TAG_NAME, "button"):
                    if candidate.text.strip() == button:
                        candidate.click()
                        return
        raise AssertionError(f"no {button!r} for {label_part!r} in #{list_id}")

    def reply(self, text: str) -> None:
        """Type a reply in the open chat and press Enter."""
        box = self.browser.driver.find_element(By.ID, "reply")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def click(self, element_id: str) -> None:
        """Click a button of the page."""
        self.browser.driver.find_element(By.ID, element_id).click()
