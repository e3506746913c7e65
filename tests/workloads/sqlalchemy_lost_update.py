"""The ORM's classic lost update (issue 13, defect 4), through SQLAlchemy 2 and
psycopg 3, which cast every placeholder: the read goes out as
`... WHERE inventory.product_id = $1::BIGINT`, the write as
`UPDATE inventory SET stock=$1::BIGINT WHERE inventory.product_id = $2::BIGINT`.

Usage: sqlalchemy_lost_update.py PORT DATABASE
"""

import sys

from sqlalchemy import BigInteger, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Inventory(Base):
    __tablename__ = "inventory"
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stock: Mapped[int] = mapped_column(BigInteger)


port, db = sys.argv[1], sys.argv[2]
engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/{db}")
with Session(engine) as s:
    s.execute(text("SET flowaudit.flow = 'shop'"))
    s.execute(text("SET flowaudit.step = 'checkout'"))
    inv = s.get(Inventory, 7)
    inv.stock -= 2
    s.commit()
engine.dispose()
