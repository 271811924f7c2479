import json
import logging
import os

import joblib
import numpy


def init():
    """Called once when the worker starts: load the model into a global."""
    global model
    # AZUREML_MODEL_DIR is the registered model's folder; "model" is the folder it was registered from.
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model/model.pkl")
    model = joblib.load(model_path)
    logging.info("Init complete")


def run(raw_data):
    """Called per request with the body as a string: {"data": [[10 features], ...]}."""
    data = numpy.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    logging.info("Request processed")
    return result.tolist()
