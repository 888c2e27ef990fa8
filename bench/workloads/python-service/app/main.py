from fastapi import FastAPI

app = FastAPI()

VERSION = "1"


@app.get("/health")
def health():
    return {"ok": True, "version": VERSION}
