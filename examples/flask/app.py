"""A Flask app that enqueues in Flask-SQLAlchemy's session: ``djctl.delay`` of a model method.

    export DJ_DATABASE_URL=sqlite:///$PWD/orders.sqlite3 DJ_APP=app
    flask --app app run    # the app
    djctl workoff          # or djctl up: the jobs
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, abort, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, update
from sqlalchemy.orm import Mapped, mapped_column

import djctl

DATABASE_URL = os.environ.get("DJ_DATABASE_URL", f"sqlite:///{Path(__file__).with_name('orders.sqlite3')}")
djctl.configure(database_url=DATABASE_URL, app="app")

app = Flask(__name__)
# djctl's engine names the drivers djctl installs (psycopg 3, PyMySQL): the app uses the same.
app.config["SQLALCHEMY_DATABASE_URI"] = djctl.engine().url.render_as_string(hide_password=False)
db = SQLAlchemy(app)


@djctl.job
class Order(db.Model):
    __tablename__ = "example_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="new")

    def ship(self, carrier: str) -> None:
        """Runs on a worker: ``self`` is the order, loaded fresh from the database."""
        with app.app_context():
            db.session.execute(update(Order).where(Order.id == self.id).values(status=f"shipped by {carrier}"))
            db.session.commit()


with app.app_context():
    db.create_all()


@app.post("/orders")
def create_order():
    item = (request.get_json(silent=True) or {}).get("item", "")
    order = Order(item=item)
    db.session.add(order)
    db.session.flush()
    job_id = djctl.delay(order, session=db.session).ship("post")
    if not item:
        # The order and its job roll back together: nothing ships that was never ordered.
        db.session.rollback()
        abort(400, "name an item")
    db.session.commit()
    return {"order": order.id, "job": job_id}, 201


@app.get("/orders/<int:order_id>")
def show_order(order_id: int):
    order = db.session.get(Order, order_id) or abort(404)
    return {"id": order.id, "item": order.item, "status": order.status}
