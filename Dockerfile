# One image for web, worker, beat and the simulator; compose picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN VBSF_DEBUG=true python manage.py collectstatic --noinput
RUN useradd --system vbsf && mkdir -p /app/var && chown vbsf /app/var
USER vbsf
EXPOSE 8000
CMD ["gunicorn", "vbsf.wsgi", "-c", "python:vbsf.gunicorn_conf"]
