"""The baseline for bench/webhook_intake.py: a bare Flask endpoint that reads the body and answers."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/hook")
def hook():
    request.get_data()
    return jsonify({"status": "accepted"})
