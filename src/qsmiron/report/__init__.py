"""The HTML study report, its figures and the methods paragraph."""
