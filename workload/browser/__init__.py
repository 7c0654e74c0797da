"""The browser vantage point: the service's chat page driven by headless Chromium (Playwright)."""
