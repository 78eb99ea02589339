"""The server-rendered pages (the HTML front), over the same services and selectors as the API."""
